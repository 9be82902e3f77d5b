import type { Upstream429Type } from './classify-429.js';

/**
 * The learning rules (AIMD) as pure functions. The store script's local half calls them and its Lua
 * half is the same arithmetic (integers and permille, so both halves agree to the unit); the
 * contract tests in test/adaptive/scripts.e2e-spec.ts hold them together. Reasoning: docs/adaptive.md.
 */

export interface DecreaseParams {
  /** ADAPTIVE_DECREASE_FACTOR in permille (0.85 → 850). */
  decreasePermille: number;
  /** ADAPTIVE_UNKNOWN_DECREASE_FACTOR in permille. */
  unknownPermille: number;
  minLimit: number;
}

export type AdjustmentReason =
  'concurrency_429' | 'unknown_429' | 'high_utilisation' | 'slow_start' | 'probe';

/**
 * The new limit after an upstream 429, or null for "no change".
 * - concurrency: floor(in-flight × factor), floor minLimit, applied only when LOWER than the current
 *   limit — the 429s of one burst carry different in-flight counts and the lowest wins, instead of
 *   each of them cutting again (no ratchet to 1); at the end of slow start (`slowStartGood`: the
 *   limit before the last slow-start step) no higher than that;
 * - unknown: floor(limit × factor) (at least −1), but not again while a decrease hold runs;
 * - rpm / tpm: never (KeyPool's cooldown handles a spent window; concurrency is not the problem).
 */
export function decreaseFor429(
  current: number,
  type: Upstream429Type,
  inFlight: number,
  inHold: boolean,
  p: DecreaseParams,
  slowStartGood: number | null = null,
): { limit: number; reason: AdjustmentReason } | null {
  if (type === 'concurrency') {
    let next = Math.floor((inFlight * p.decreasePermille) / 1000);
    // The first push-back after a slow-start step: the limit before that step ran busy without a
    // 429, the step overshot — no higher than that (TCP's ssthresh = half the window at the loss).
    if (slowStartGood !== null) next = Math.min(next, slowStartGood);
    next = Math.max(p.minLimit, next);
    return next < current ? { limit: next, reason: 'concurrency_429' } : null;
  }
  if (type === 'unknown') {
    if (inHold || current <= p.minLimit) return null;
    const next = Math.max(
      p.minLimit,
      Math.min(current - 1, Math.floor((current * p.unknownPermille) / 1000)),
    );
    return next < current ? { limit: next, reason: 'unknown_429' } : null;
  }
  return null;
}

export interface IncreaseState {
  nowMs: number;
  /** Decreases forbid increases until then. */
  holdUntilMs: number;
  /** The lowest in-flight count a concurrency 429 happened at (the known boundary); null when none / cleared by a probe. */
  boundary: number | null;
  lastConcurrency429Ms: number;
  lastProbeMs: number;
  /**
   * The key was pushed back: a concurrency or unknown 429 since its learning began or was reset
   * (the store's `c` or `u` counter is above 0). Until then, high utilisation grows it by slow start.
   */
  pushedBack: boolean;
}

export interface IncreaseParams {
  maxLimit: number;
  probeIntervalMs: number;
  /** ADAPTIVE_SLOW_START_FACTOR in permille (2 → 2000); 1000 or less = no slow start. */
  slowStartPermille: number;
}

export type IncreaseRefusal = 'hold' | 'max' | 'boundary' | 'quiet_period' | 'slow_start';

/**
 * May the limit go up, and to what?
 * - high_utilisation: not during a hold, never to the known boundary (the in-flight count a
 *   concurrency 429 happened at): below it the key is known to work. +1 (additive increase) — or,
 *   while the key was never pushed back, slow start: × the slow-start factor (at least +1), bounded
 *   by maxLimit and the boundary, reason 'slow_start';
 * - probe: only after a whole probe interval without a concurrency 429 and since the last probe; it
 *   may cross the boundary (and forgets it), so a key is never stuck low after the upstream raised
 *   its limit. Not during slow start (refused with 'slow_start'): before the first push-back there
 *   is nothing to rediscover, and a busy key grows faster by slow start.
 */
export function increaseDecision(
  current: number,
  reason: 'high_utilisation' | 'probe',
  s: IncreaseState,
  p: IncreaseParams,
):
  | { ok: true; limit: number; reason: 'high_utilisation' | 'slow_start' | 'probe' }
  | { ok: false; why: IncreaseRefusal } {
  if (s.nowMs < s.holdUntilMs) return { ok: false, why: 'hold' };
  if (current >= p.maxLimit) return { ok: false, why: 'max' };
  const slow = p.slowStartPermille > 1000 && !s.pushedBack;
  if (reason === 'high_utilisation') {
    if (s.boundary !== null && current + 1 >= s.boundary) return { ok: false, why: 'boundary' };
    if (slow) {
      let next = Math.max(current + 1, Math.floor((current * p.slowStartPermille) / 1000));
      next = Math.min(next, p.maxLimit);
      if (s.boundary !== null) next = Math.min(next, s.boundary - 1);
      return { ok: true, limit: next, reason: 'slow_start' };
    }
  } else if (slow) {
    return { ok: false, why: 'slow_start' };
  } else if (
    s.nowMs - s.lastConcurrency429Ms < p.probeIntervalMs ||
    s.nowMs - s.lastProbeMs < p.probeIntervalMs
  ) {
    return { ok: false, why: 'quiet_period' };
  }
  return { ok: true, limit: current + 1, reason };
}

/**
 * Recent utilisation samples of one key on this instance (in-flight ÷ limit at the moment the slot
 * was taken, from successful answers). Cleared on every limit change and every 429.
 */
export class UtilisationWindow {
  private readonly samples: number[] = [];
  /** The limit the samples were taken against. */
  limit = 0;
  lastProbeAttemptMs = 0;

  constructor(private readonly size: number) {}

  get count(): number {
    return this.samples.length;
  }

  add(inFlight: number, limit: number): void {
    if (limit !== this.limit) {
      this.samples.length = 0;
      this.limit = limit;
    }
    this.samples.push(limit > 0 ? inFlight / limit : 0);
    if (this.samples.length > this.size) this.samples.shift();
  }

  reset(): void {
    this.samples.length = 0;
  }

  /**
   * 'high_utilisation' when the window is full and at least `share` of its samples are at or above
   * `threshold`; 'probe' when it is full and the key is used at all (mean ≥ 0.3) — the store decides
   * whether the quiet period has passed; null otherwise.
   */
  decision(threshold: number, share: number): 'high_utilisation' | 'probe' | null {
    if (this.samples.length < this.size) return null;
    const high = this.samples.filter((u) => u >= threshold - 1e-9).length;
    if (high >= share * this.samples.length - 1e-9) return 'high_utilisation';
    const mean = this.samples.reduce((a, b) => a + b, 0) / this.samples.length;
    return mean >= 0.3 ? 'probe' : null;
  }
}

// ---- adjustment history (stored as one string field; identical in Lua) ---------------------------

export interface Adjustment {
  atMs: number;
  old: number;
  new: number;
  reason: string;
  inFlight: number;
}

/** `at|old|new|reason|inFlight` records joined by `;`, oldest first. */
export function parseHistory(raw: string | null | undefined): Adjustment[] {
  if (!raw) return [];
  return raw
    .split(';')
    .filter(Boolean)
    .map((rec) => {
      const [at, old, next, reason, inFlight] = rec.split('|');
      return {
        atMs: Number(at),
        old: Number(old),
        new: Number(next),
        reason: reason ?? 'unknown',
        inFlight: Number(inFlight ?? 0),
      };
    });
}

export function appendHistory(raw: string | null | undefined, a: Adjustment, max: number): string {
  const records = raw ? raw.split(';').filter(Boolean) : [];
  records.push(`${a.atMs}|${a.old}|${a.new}|${a.reason}|${a.inFlight}`);
  return records.slice(Math.max(0, records.length - max)).join(';');
}
