/**
 * Local admission grants (ADMISSION_GRANTS=on; docs/scaling.md "Local admission grants"): the pure
 * rules. An instance's admission takes a block of B units in Redis (admission-grant.lua: every
 * client request window, the upstream key's RPM window and its concurrency, each charged B, only
 * when each has room for B); the B-1 units it did not use admit later requests of the same
 * subjects and provider without Redis, and what is left is given back after a short idle time, at
 * a max age, on an invalidation or at shutdown.
 */

/**
 * The block asked for. The script takes at most 1/16 of what is left of every request window (the
 * client's, the upstream key's RPM) and 1/4 of the key's free concurrency (admission-grant.lua).
 */
export const GRANT_BLOCK_MAX = 32;
/** A grant not used for this long gives its unused units back. */
export const GRANT_IDLE_MS = 200;
/** A grant gives its unused units back at this age, used or not (a window never holds stale reservations long). */
export const GRANT_MAX_AGE_MS = 1000;
/** A provider counts as contended this long after a request queued for it anywhere (the dispatcher's own figure). */
export const GRANT_CONTENDED_MS = 5000;

/** What identifies the client policies a grant was reserved in (rate-limit Policy's fields). */
export interface GrantPolicy {
  readonly name: string;
  readonly subject: string;
  readonly kind: number;
  readonly limit: number;
  readonly windowMs: number;
  readonly cost: number;
  readonly keys: readonly string[];
}

/**
 * The grant key: the provider and every client policy (subject, limits, store keys) of the
 * request. A request takes a local unit only from a grant reserved in exactly the same policies.
 */
export function grantKey(providerId: string, policies: readonly GrantPolicy[]): string {
  let k = providerId;
  for (const p of policies)
    k += `\n${p.name}|${p.subject}|${p.kind}|${p.limit}|${p.windowMs}|${p.cost}|${p.keys.join(',')}`;
  return k;
}

/** A grant's counters: units 1..block were reserved at `createdAt`; units 1..used admitted a request. */
export interface GrantCount {
  readonly block: number;
  used: number;
  readonly createdAt: number;
  lastUsedAt: number;
}

/** Whether the grant's unused units go back now: idle, or at its max age. */
export function grantDue(
  g: GrantCount,
  now: number,
  idleMs = GRANT_IDLE_MS,
  maxAgeMs = GRANT_MAX_AGE_MS,
): boolean {
  return now - g.lastUsedAt >= idleMs || now - g.createdAt >= maxAgeMs;
}

/**
 * One grant key's recent demand on this instance: requests counted in two consecutive buckets of
 * `windowMs` (a sliding-window estimate, as the limiter's sub-buckets).
 */
export interface GrantDemand {
  bucketStart: number;
  current: number;
  previous: number;
}

/**
 * Counts a request of the grant key at `now` and returns the block it should ask for: about as many
 * units as the key's requests on this instance in the last `windowMs` (the grant's idle time, so a
 * block sized by it is usually spent before it would be given back), at least 1, at most `max`.
 * A lone request (none in the window before it) asks for 1 — the exact admission: a client sending
 * one request now and then would otherwise reserve a block, use one unit and pay a give-back for the
 * rest (three scripts instead of two); a busy one reaches `max` within a few requests.
 */
export function demandBlock(
  d: GrantDemand,
  now: number,
  windowMs = GRANT_IDLE_MS,
  max = GRANT_BLOCK_MAX,
): number {
  const elapsed = now - d.bucketStart;
  if (elapsed >= 2 * windowMs) {
    d.bucketStart = now;
    d.previous = 0;
    d.current = 0;
  } else if (elapsed >= windowMs) {
    d.bucketStart += windowMs;
    d.previous = d.current;
    d.current = 0;
  }
  const into = (now - d.bucketStart) / windowMs;
  const recent = d.current + d.previous * (1 - into);
  d.current += 1;
  return Math.max(1, Math.min(max, Math.ceil(recent)));
}

/** Takes the next unit (its number, 2..block) or null when none is left or the grant is due. */
export function takeUnit(
  g: GrantCount,
  now: number,
  idleMs = GRANT_IDLE_MS,
  maxAgeMs = GRANT_MAX_AGE_MS,
): number | null {
  if (g.used >= g.block || grantDue(g, now, idleMs, maxAgeMs)) return null;
  g.used += 1;
  g.lastUsedAt = now;
  return g.used;
}

/** Unit k's member in every window (the block's request member or lease id for k = 1, `m:k` after). */
export function unitMember(base: string, k: number): string {
  return k === 1 ? base : `${base}:${k}`;
}
