/**
 * The retreat state machine of a provider's token bucket (seed 004's AdaptiveTokenBucket, shared by
 * every instance), as pure integer arithmetic. The store scripts' local halves call these functions;
 * their Lua halves are the same steps (contract-tested in test/adaptive/scripts.e2e-spec.ts).
 *
 *   NORMAL ──429 rate > enter──▶ RETREAT ──rate < exit for hold──▶ RECOVER ──factor back at 1──▶ NORMAL
 *                                   ▲  └─ still > enter a window after the last cut: cut deeper    │
 *                                   └──────────────── rate > enter again ◀─────────────────────────┘
 *
 * The effective rate is base × factor; the factor is kept in permille (1000 = the provider's rpm).
 */
export const RETREAT_STATES = ['normal', 'retreat', 'recover'] as const;
export type RetreatStateName = (typeof RETREAT_STATES)[number];
export const NORMAL = 0;
export const RETREAT = 1;
export const RECOVER = 2;
/** A cut aims at this share (permille) of what the upstream demonstrably accepted. */
export const ACCEPTED_MARGIN_PERMILLE = 900;
/** Slots of the sliding window of upstream answers. */
export const WINDOW_SLOTS = 10;

export interface RetreatParams {
  windowMs: number;
  minSamples: number;
  /** RETREAT_ENTER_RATE / RETREAT_EXIT_RATE in permyriad (0.1 → 1000). */
  enterPermyriad: number;
  exitPermyriad: number;
  holdMs: number;
  /** RETREAT_FACTOR / RETREAT_MIN_FACTOR / RETREAT_RECOVER_STEP in permille. */
  factorPermille: number;
  minFactorPermille: number;
  stepPermille: number;
  stepMs: number;
  enabled: boolean;
}

/** Stored per provider (hash fields st, f, since, cut, calm, step, ob). */
export interface RetreatState {
  st: number;
  f: number;
  since: number;
  cut: number;
  calm: number;
  step: number;
  /** Observed base rpm, for providers without an rpm (set on entering RETREAT). */
  ob: number;
}

export type RetreatEvent = '' | 'enter' | 'cut' | 'recover' | 'retreat' | 'step' | 'normal' | 'disabled';

export interface RetreatStep {
  state: RetreatState;
  event: RetreatEvent;
  /** The base the factor applies to (the provider's rpm, or the observed one); 0 = none. */
  base: number;
  acceptedRpm: number;
}

export function emptyRetreatState(): RetreatState {
  return { st: NORMAL, f: 1000, since: 0, cut: 0, calm: 0, step: 0, ob: 0 };
}

/**
 * One evaluation after answers were added to the window (`n` answers, `e` of them rate 429s).
 * `baseRpm` 0 = the provider has no rpm: the observed answer rate at the moment of the first cut
 * becomes the base, so such providers retreat too.
 */
export function stepRetreat(
  s0: RetreatState,
  n: number,
  e: number,
  baseRpm: number,
  now: number,
  p: RetreatParams,
): RetreatStep {
  const s = { ...s0 };
  const acceptedRpm = Math.floor(((n - e) * 60000) / p.windowMs);
  const observedRpm = Math.floor((n * 60000) / p.windowMs);
  let base = baseRpm > 0 ? baseRpm : s.ob;
  if (!p.enabled) {
    if (s.st !== NORMAL) {
      return { state: { ...emptyRetreatState(), since: now }, event: 'disabled', base, acceptedRpm };
    }
    return { state: s, event: '', base, acceptedRpm };
  }
  const enter = n >= p.minSamples && e * 10000 > p.enterPermyriad * n;
  const below = e === 0 || e * 10000 < p.exitPermyriad * n;
  const cutFrom = (f: number, b: number): number =>
    Math.max(
      p.minFactorPermille,
      Math.min(
        Math.floor((f * p.factorPermille) / 1000),
        Math.floor((acceptedRpm * ACCEPTED_MARGIN_PERMILLE) / b),
      ),
    );
  let event: RetreatEvent = '';
  if (s.st === NORMAL) {
    if (enter) {
      if (baseRpm <= 0) {
        s.ob = Math.max(1, observedRpm);
        base = s.ob;
      }
      s.f = cutFrom(1000, base);
      s.st = RETREAT;
      s.since = now;
      s.cut = now;
      s.calm = 0;
      event = 'enter';
    }
  } else if (s.st === RETREAT) {
    if (enter && now - s.cut >= p.windowMs) {
      s.f = Math.min(s.f, cutFrom(s.f, Math.max(1, base)));
      s.cut = now;
      s.calm = 0;
      event = 'cut';
    } else if (below) {
      if (s.calm === 0) s.calm = now;
      if (now - s.calm >= p.holdMs) {
        s.st = RECOVER;
        s.since = now;
        s.step = now;
        s.calm = 0;
        event = 'recover';
      }
    } else {
      s.calm = 0;
    }
  } else if (enter) {
    s.f = Math.min(s.f, cutFrom(s.f, Math.max(1, base)));
    s.st = RETREAT;
    s.since = now;
    s.cut = now;
    s.calm = 0;
    event = 'retreat';
  } else if (below && now - s.step >= p.stepMs) {
    s.f = Math.min(1000, s.f + p.stepPermille);
    s.step = now;
    event = 'step';
    if (s.f >= 1000) {
      s.st = NORMAL;
      s.f = 1000;
      s.since = now;
      s.ob = 0;
      event = 'normal';
    }
  }
  return { state: s, event, base, acceptedRpm };
}

/** The bucket a gate enforces: refill per ms and capacity; null = no bucket (no base rate). */
export function bucketParams(
  baseRpm: number,
  burst: number,
  st: number,
  f: number,
  ob: number,
): { ratePerMs: number; cap: number; effectiveRpm: number } | null {
  let base = baseRpm;
  if (base <= 0) {
    if (st === NORMAL || ob <= 0) return null;
    base = ob;
  }
  const cap0 = burst > 0 ? burst : Math.max(1, Math.ceil(base / 60));
  const effectiveRpm = (base * f) / 1000;
  return { ratePerMs: effectiveRpm / 60000, cap: Math.max(1, Math.floor((cap0 * f) / 1000)), effectiveRpm };
}
