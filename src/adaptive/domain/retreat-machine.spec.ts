import { describe, expect, it } from 'vitest';
import {
  bucketParams,
  emptyRetreatState,
  RECOVER,
  RETREAT,
  NORMAL,
  stepRetreat,
  type RetreatParams,
  type RetreatState,
} from './retreat-machine.js';

const P: RetreatParams = {
  windowMs: 10_000,
  minSamples: 20,
  enterPermyriad: 1000, // 10 %
  exitPermyriad: 200, // 2 %
  holdMs: 5000,
  factorPermille: 500,
  minFactorPermille: 50,
  stepPermille: 250,
  stepMs: 1000,
  enabled: true,
};

describe('retreat state machine', () => {
  it('NORMAL stays NORMAL below the enter rate or with too few samples', () => {
    expect(stepRetreat(emptyRetreatState(), 100, 10, 600, 1000, P).event).toBe(''); // exactly 10 %: not above
    expect(stepRetreat(emptyRetreatState(), 10, 9, 600, 1000, P).event).toBe(''); // 10 answers < minSamples
  });

  it('NORMAL → RETREAT: cut to min(base × factor, 90 % of what the upstream accepted)', () => {
    // 100 answers in 10 s, 20 were 429 → accepted 80 per 10 s = 480 rpm → 90 % = 432 rpm = 720 ‰ of 600
    let r = stepRetreat(emptyRetreatState(), 100, 20, 600, 1000, P);
    expect(r.event).toBe('enter');
    expect(r.state).toMatchObject({ st: RETREAT, f: 500, since: 1000, cut: 1000 });
    // heavy overload: 100 answers, 80 429s → accepted 120 rpm → 108 rpm = 180 ‰
    r = stepRetreat(emptyRetreatState(), 100, 80, 600, 1000, P);
    expect(r.state.f).toBe(180);
    expect(r.acceptedRpm).toBe(120);
    // never below the minimum factor
    expect(stepRetreat(emptyRetreatState(), 100, 100, 600, 1000, P).state.f).toBe(50);
  });

  it('a provider without rpm retreats from its observed rate', () => {
    const r = stepRetreat(emptyRetreatState(), 100, 50, 0, 1000, P);
    expect(r.state.ob).toBe(600); // 100 answers / 10 s
    expect(r.base).toBe(600);
    expect(r.state.f).toBe(450); // accepted 300 rpm × 0.9 = 270 of 600
  });

  it('RETREAT cuts deeper only a whole window after the last cut', () => {
    const s: RetreatState = { ...emptyRetreatState(), st: RETREAT, f: 500, since: 1000, cut: 1000 };
    expect(stepRetreat(s, 100, 50, 600, 5000, P).event).toBe(''); // same window: the old answers still count
    const r = stepRetreat(s, 100, 50, 600, 11_000, P);
    expect(r.event).toBe('cut');
    expect(r.state.f).toBe(250);
    expect(r.state.cut).toBe(11_000);
  });

  it('RETREAT → RECOVER after the rate stayed below exit for the hold time', () => {
    const s: RetreatState = { ...emptyRetreatState(), st: RETREAT, f: 400, since: 1000, cut: 1000 };
    let r = stepRetreat(s, 50, 0, 600, 20_000, P);
    expect(r.event).toBe('');
    expect(r.state.calm).toBe(20_000);
    r = stepRetreat(r.state, 50, 1, 600, 22_000, P); // 2 %: not below 2 % → calm resets
    expect(r.state.calm).toBe(0);
    r = stepRetreat(r.state, 50, 0, 600, 23_000, P);
    r = stepRetreat(r.state, 50, 0, 600, 27_999, P);
    expect(r.state.st).toBe(RETREAT);
    r = stepRetreat(r.state, 50, 0, 600, 28_000, P);
    expect(r.event).toBe('recover');
    expect(r.state).toMatchObject({ st: RECOVER, f: 400, since: 28_000, step: 28_000 });
  });

  it('RECOVER ramps back in steps to NORMAL; holds between exit and enter; a new surge → RETREAT', () => {
    let s: RetreatState = { ...emptyRetreatState(), st: RECOVER, f: 400, since: 0, step: 0 };
    let r = stepRetreat(s, 50, 0, 600, 500, P);
    expect(r.event).toBe(''); // step interval not over
    r = stepRetreat(s, 50, 0, 600, 1000, P);
    expect(r.event).toBe('step');
    expect(r.state.f).toBe(650);
    r = stepRetreat(r.state, 100, 5, 600, 2000, P); // 5 %: between exit and enter → hold
    expect(r.event).toBe('');
    expect(r.state.f).toBe(650);
    r = stepRetreat(r.state, 100, 0, 600, 2000, P);
    expect(r.state.f).toBe(900);
    r = stepRetreat(r.state, 100, 0, 600, 3000, P);
    expect(r.event).toBe('normal');
    expect(r.state).toMatchObject({ st: NORMAL, f: 1000, since: 3000, ob: 0 });

    s = { ...emptyRetreatState(), st: RECOVER, f: 650, since: 0, step: 0 };
    r = stepRetreat(s, 100, 30, 600, 1000, P);
    expect(r.event).toBe('retreat');
    expect(r.state.st).toBe(RETREAT);
    expect(r.state.f).toBe(325);
  });

  it('disabled: back to NORMAL, never retreats', () => {
    const s: RetreatState = { ...emptyRetreatState(), st: RETREAT, f: 300 };
    expect(stepRetreat(s, 100, 90, 600, 1000, { ...P, enabled: false })).toMatchObject({
      event: 'disabled',
      state: { st: NORMAL, f: 1000 },
    });
    expect(stepRetreat(emptyRetreatState(), 100, 90, 600, 1000, { ...P, enabled: false }).event).toBe('');
  });
});

describe('bucketParams', () => {
  it('base × factor, capacity burst × factor (at least 1), one second of base without burst', () => {
    expect(bucketParams(600, 20, NORMAL, 1000, 0)).toEqual({ ratePerMs: 0.01, cap: 20, effectiveRpm: 600 });
    expect(bucketParams(600, 20, RETREAT, 500, 0)).toEqual({ ratePerMs: 0.005, cap: 10, effectiveRpm: 300 });
    expect(bucketParams(600, 0, NORMAL, 1000, 0)!.cap).toBe(10);
    expect(bucketParams(600, 1, RETREAT, 100, 0)!.cap).toBe(1);
    expect(bucketParams(0, 0, NORMAL, 1000, 0)).toBeNull();
    expect(bucketParams(0, 0, RETREAT, 500, 120)).toEqual({ ratePerMs: 0.001, cap: 1, effectiveRpm: 60 });
  });
});
