import type { Policy } from './policies.js';

/**
 * Response headers of a decision. Pure, unit tested.
 *
 * - `X-RateLimit-Limit / -Remaining / -Reset` describe the tightest request policy: on a refusal the
 *   refusing policy that frees up last, otherwise the one with the fewest remaining requests.
 *   Reset is in seconds (rounded up) until Remaining next grows; when Remaining is 0 that is the
 *   moment a retry can succeed.
 * - `RateLimit-Policy` / `RateLimit` (draft-ietf-httpapi-ratelimit-headers) list every request
 *   policy: `"key";q=60;w=60` and `"key";r=59;t=1`. A token bucket adds `burst=`. The TPM budget
 *   counts tokens, not requests, and is left out of both (a TPM refusal still names it in the body).
 * - `Retry-After` (refusals only): whole seconds, at least 1, rounded up — never earlier than the
 *   moment every refusing policy admits again.
 */

export interface PolicyOutcome {
  policy: Policy;
  admitted: boolean;
  remaining: number;
  current: number;
  resetMs: number;
  retryMs: number;
}

export function seconds(ms: number): number {
  return Math.max(0, Math.ceil(ms / 1000));
}

export function retryAfterSeconds(outcomes: readonly PolicyOutcome[]): number {
  let waitMs = 0;
  for (const o of outcomes) if (!o.admitted && o.retryMs > waitMs) waitMs = o.retryMs;
  return Math.max(1, Math.ceil(waitMs / 1000));
}

/** The policy that refused last-to-free, or the request policy with the least room. */
export function tightest(outcomes: readonly PolicyOutcome[]): PolicyOutcome | undefined {
  let refused: PolicyOutcome | undefined;
  for (const o of outcomes) if (!o.admitted && (!refused || o.retryMs > refused.retryMs)) refused = o;
  if (refused) return refused;
  let best: PolicyOutcome | undefined;
  for (const o of outcomes) {
    if (o.policy.unit !== 'requests') continue;
    if (
      !best ||
      o.remaining < best.remaining ||
      (o.remaining === best.remaining && o.resetMs > best.resetMs) ||
      (o.remaining === best.remaining && o.resetMs === best.resetMs && o.policy.burst < best.policy.burst)
    ) {
      best = o;
    }
  }
  return best;
}

/** `"name"`, quotes and backslashes dropped; memoised (policy names are few and fixed). */
const quoted = new Map<string, string>();
function quote(name: string): string {
  let q = quoted.get(name);
  if (q === undefined) {
    q = `"${name.replace(/["\\]/g, '')}"`;
    if (quoted.size < 1024) quoted.set(name, q);
  }
  return q;
}

/** A policy's `RateLimit-Policy` item (`"name";q=…;w=…[;burst=…]`); memoised per Policy object (never mutated). */
const policyItems = new WeakMap<Policy, string>();
function policyItem(p: Policy): string {
  let item = policyItems.get(p);
  if (item === undefined) {
    const burst = p.algorithm === 'token_bucket' ? `;burst=${p.burst}` : '';
    item = `${quote(p.name)};q=${p.limit};w=${seconds(p.windowMs)}${burst}`;
    policyItems.set(p, item);
  }
  return item;
}

export function rateLimitHeaders(
  outcomes: readonly PolicyOutcome[],
  refused: boolean,
): Record<string, string> {
  const headers: Record<string, string> = {};
  const top = tightest(outcomes);
  if (top) {
    headers['x-ratelimit-limit'] = String(top.policy.burst);
    headers['x-ratelimit-remaining'] = String(top.admitted ? top.remaining : 0);
    headers['x-ratelimit-reset'] = String(
      seconds(top.admitted ? top.resetMs : Math.max(top.retryMs, top.resetMs)),
    );
  }
  let policy = '';
  let state = '';
  for (const o of outcomes) {
    if (o.policy.unit !== 'requests') continue;
    const p = o.policy;
    const r = o.admitted ? o.remaining : 0;
    const t = seconds(o.admitted ? o.resetMs : Math.max(o.retryMs, o.resetMs));
    const sep = policy === '' ? '' : ', ';
    policy += sep + policyItem(p);
    state += `${sep}${quote(p.name)};r=${r};t=${t}`;
  }
  if (policy !== '') {
    headers['ratelimit-policy'] = policy;
    headers.ratelimit = state;
  }
  if (refused) headers['retry-after'] = String(retryAfterSeconds(outcomes));
  return headers;
}
