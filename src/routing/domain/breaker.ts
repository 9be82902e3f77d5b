/**
 * The circuit breaker's rules (docs/breaker.md), pure: one target's shared record and the step every
 * event takes on it. The store runs the step atomically — embedded: breaker.script.ts calls
 * `stepBreaker` over LocalDb; distributed: breaker.lua carries the same rule (Redis can't call
 * TypeScript), held equal to this file by test/routing/breaker-equivalence.e2e-spec.ts.
 *
 * States (`s`, also the gauge's values): 0 closed, 1 half-open with the probe out, 2 open. An open
 * record whose `ou` (open until) has passed is shown as half-open: its probe is waiting to be claimed.
 */

import type { BreakerForce } from '../routing.types.js';

/** BREAKER_* configuration in integer units. */
export interface BreakerRules {
  /** Failures in a row that open the breaker. */
  consecutiveFailures: number;
  /** Failures / requests in the window at or above this (per mille) open it… */
  failureRatePermille: number;
  /** …once the window holds at least this many requests. */
  minRequests: number;
  /** The fixed window the rate is counted over: it restarts at the first event after it ended. */
  windowMs: number;
  /** How long it stays open before one probe may go. */
  openMs: number;
}

export const CLOSED = 0;
export const HALF_OPEN = 1;
export const OPEN = 2;
export type StateCode = typeof CLOSED | typeof HALF_OPEN | typeof OPEN;

/** The shared record of one target (a hash in the store, these field names). */
export interface BreakerRecord {
  s: StateCode;
  /** Consecutive failures (kept while open, for the view; reset by a success or on closing). */
  cf: number;
  /** Window start (ms), failures and requests in it. */
  ws: number;
  wf: number;
  wr: number;
  /** Open until (ms): the probe may go from then on; 0 when closed. */
  ou: number;
  /** The probe's claim holds until (ms); after it another probe may go (the first one died); 0: none. */
  pu: number;
  /** Last failure (ms, store clock). */
  lf: number;
  /**
   * Version: on every change max(v + 1, now) — a clock that only grows, also across an expired
   * record — so views keep the newest of a reply and a message.
   */
  v: number;
}

export const RECORD_FIELDS = ['s', 'cf', 'ws', 'wf', 'wr', 'ou', 'pu', 'lf', 'v'] as const;

export function emptyRecord(): BreakerRecord {
  return { s: CLOSED, cf: 0, ws: 0, wf: 0, wr: 0, ou: 0, pu: 0, lf: 0, v: 0 };
}

export type BreakerOp =
  /** One failure (5xx, timeout, connection error); `probe`: it was the half-open probe. */
  | { op: 'fail'; probe: boolean }
  /** One success reported at once (a probe, or after failures): resets the consecutive count. */
  | { op: 'ok'; probe: boolean }
  /**
   * `n` successes counted in process and flushed together; the consecutive count resets only if
   * the last of them came after the last failure (`lastMs`, instance clock).
   */
  | { op: 'add'; n: number; lastMs: number }
  /** Claim the half-open probe; the claim holds `claimMs`. */
  | { op: 'claim'; claimMs: number }
  /**
   * Give back a probe claim that was never used (the request went elsewhere or was gone before it
   * was sent): only the claim `token` (its `pu`) names is released, so a stale release never frees
   * a newer claim. The next admission may probe at once.
   */
  | { op: 'release'; token: number }
  /** Read only. */
  | { op: 'get' };

export type BreakerTransition = '' | 'open' | 'half_open' | 'closed';
export type ClaimAnswer = '' | 'allow' | 'probe' | 'deny';

export interface BreakerStep {
  next: BreakerRecord;
  /** The record changed (the store writes it and renews its TTL). */
  changed: boolean;
  transition: BreakerTransition;
  /** claim only. */
  admission: ClaimAnswer;
}

/** The step one event takes on a target's record at `now` (store clock). */
export function stepBreaker(
  rec: BreakerRecord,
  op: BreakerOp,
  now: number,
  rules: BreakerRules,
): BreakerStep {
  const r: BreakerRecord = { ...rec };
  let transition: BreakerTransition = '';
  let admission: ClaimAnswer = '';
  const roll = () => {
    if (r.ws === 0 || now >= r.ws + rules.windowMs) {
      r.ws = now;
      r.wf = 0;
      r.wr = 0;
    }
  };
  const open = () => {
    r.s = OPEN;
    r.ou = now + rules.openMs;
    r.pu = 0;
    transition = 'open';
  };
  switch (op.op) {
    case 'fail':
      r.cf += 1;
      r.lf = now;
      if (r.s === CLOSED) {
        roll();
        r.wf += 1;
        r.wr += 1;
        if (
          r.cf >= rules.consecutiveFailures ||
          (r.wr >= rules.minRequests && r.wf * 1000 >= rules.failureRatePermille * r.wr)
        )
          open();
      } else if (r.s === HALF_OPEN && op.probe) {
        open();
      }
      // open, or half-open and not the probe: a request let through before it opened; counted only
      break;
    case 'ok':
      if (r.s === CLOSED) {
        roll();
        r.wr += 1;
        r.cf = 0;
      } else if (r.s === HALF_OPEN && op.probe) {
        r.s = CLOSED;
        r.cf = 0;
        r.ws = now;
        r.wf = 0;
        r.wr = 0;
        r.ou = 0;
        r.pu = 0;
        transition = 'closed';
      }
      break;
    case 'add':
      if (r.s === CLOSED && op.n > 0) {
        roll();
        r.wr += op.n;
        if (op.lastMs > r.lf) r.cf = 0;
      }
      break;
    case 'claim':
      if (r.s === CLOSED) admission = 'allow';
      else if (r.s === OPEN ? now >= r.ou : now >= r.pu) {
        if (r.s === OPEN) transition = 'half_open';
        r.s = HALF_OPEN;
        r.pu = now + op.claimMs;
        admission = 'probe';
      } else admission = 'deny';
      break;
    case 'release':
      if (r.s === HALF_OPEN && r.pu === op.token) r.pu = 0;
      break;
    case 'get':
      break;
  }
  const changed = RECORD_FIELDS.some((f) => r[f] !== rec[f]);
  if (changed) r.v = Math.max(rec.v + 1, now);
  return { next: r, changed, transition, admission };
}

/** The state a record shows at `now`: open past its open time is half-open (its probe is waiting). */
export function visibleState(rec: BreakerRecord, now: number): 'closed' | 'open' | 'half_open' {
  if (rec.s === CLOSED) return 'closed';
  if (rec.s === HALF_OPEN || now >= rec.ou) return 'half_open';
  return 'open';
}

/** The window's counts as they stand at `now` (0 once it has ended). */
export function visibleWindow(
  rec: BreakerRecord,
  now: number,
  rules: BreakerRules,
): { failures: number; requests: number } {
  if (rec.s === CLOSED && (rec.ws === 0 || now >= rec.ws + rules.windowMs))
    return { failures: 0, requests: 0 };
  return { failures: rec.wf, requests: rec.wr };
}

/**
 * Admission from an instance's view of the record, without the store: `claim` means the probe may be
 * due and the store decides who gets it (one claim wins across every instance).
 */
export function admitFromView(
  rec: BreakerRecord | undefined,
  forced: BreakerForce,
  now: number,
): 'allow' | 'deny' | 'claim' {
  if (forced === 'open') return 'deny';
  if (forced === 'closed') return 'allow';
  if (!rec || rec.s === CLOSED) return 'allow';
  if (rec.s === OPEN ? now < rec.ou : now < rec.pu) return 'deny';
  return 'claim';
}

/** BREAKER_* (fractions) → integer rules. */
export function breakerRules(c: {
  consecutiveFailures: number;
  failureRate: number;
  minRequests: number;
  windowMs: number;
  openMs: number;
}): BreakerRules {
  return {
    consecutiveFailures: c.consecutiveFailures,
    failureRatePermille: Math.round(c.failureRate * 1000),
    minRequests: c.minRequests,
    windowMs: c.windowMs,
    openMs: c.openMs,
  };
}
