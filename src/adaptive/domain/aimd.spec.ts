import { describe, expect, it } from 'vitest';
import {
  appendHistory,
  decreaseFor429,
  increaseDecision,
  parseHistory,
  UtilisationWindow,
  type IncreaseState,
} from './aimd.js';

const P = { decreasePermille: 850, unknownPermille: 900, minLimit: 1 };

describe('AIMD decrease', () => {
  it('concurrency 429: ×0.85 of the in-flight count, floor 1', () => {
    expect(decreaseFor429(8, 'concurrency', 5, false, P)).toEqual({ limit: 4, reason: 'concurrency_429' });
    expect(decreaseFor429(8, 'concurrency', 8, false, P)).toEqual({ limit: 6, reason: 'concurrency_429' });
    expect(decreaseFor429(4, 'concurrency', 4, false, P)).toEqual({ limit: 3, reason: 'concurrency_429' });
    expect(decreaseFor429(2, 'concurrency', 1, false, P)).toEqual({ limit: 1, reason: 'concurrency_429' });
    expect(decreaseFor429(1, 'concurrency', 1, false, P)).toBeNull();
  });
  it('a burst of 429s does not ratchet: only a LOWER value applies (also during a hold)', () => {
    // first 429 of a burst at in-flight 5 took 8 → 4; the others (in-flight 6, 7, 8) change nothing
    for (const inFlight of [5, 6, 7, 8])
      expect(decreaseFor429(4, 'concurrency', inFlight, true, P)).toBeNull();
    expect(decreaseFor429(6, 'concurrency', 5, true, P)).toEqual({ limit: 4, reason: 'concurrency_429' });
  });
  it('unknown 429: mild (×0.9, at least −1), not again during a hold, floor minLimit', () => {
    expect(decreaseFor429(20, 'unknown', 3, false, P)).toEqual({ limit: 18, reason: 'unknown_429' });
    expect(decreaseFor429(4, 'unknown', 3, false, P)).toEqual({ limit: 3, reason: 'unknown_429' });
    expect(decreaseFor429(4, 'unknown', 3, true, P)).toBeNull();
    expect(decreaseFor429(1, 'unknown', 1, false, P)).toBeNull();
    expect(decreaseFor429(3, 'unknown', 1, false, { ...P, minLimit: 3 })).toBeNull();
  });
  it('rpm / tpm 429: count only', () => {
    expect(decreaseFor429(8, 'rpm', 8, false, P)).toBeNull();
    expect(decreaseFor429(8, 'tpm', 8, false, P)).toBeNull();
  });
});

describe('AIMD increase', () => {
  const s: IncreaseState = {
    nowMs: 1_000_000,
    holdUntilMs: 0,
    boundary: null,
    lastConcurrency429Ms: 0,
    lastProbeMs: 0,
    pushedBack: true, // AIMD proper: the key was pushed back once
  };
  const p = { maxLimit: 100, probeIntervalMs: 300_000, slowStartPermille: 2000 };
  it('high utilisation: +1 outside a hold, below the known boundary, up to the max', () => {
    const up = { ok: true, reason: 'high_utilisation' };
    expect(increaseDecision(4, 'high_utilisation', s, p)).toEqual({ ...up, limit: 5 });
    expect(increaseDecision(4, 'high_utilisation', { ...s, holdUntilMs: s.nowMs + 1 }, p)).toEqual({
      ok: false,
      why: 'hold',
    });
    expect(increaseDecision(4, 'high_utilisation', { ...s, boundary: 5 }, p)).toEqual({
      ok: false,
      why: 'boundary',
    });
    expect(increaseDecision(3, 'high_utilisation', { ...s, boundary: 5 }, p)).toEqual({ ...up, limit: 4 });
    expect(increaseDecision(100, 'high_utilisation', s, p)).toEqual({ ok: false, why: 'max' });
  });
  it('probe: only after a quiet period (no concurrency 429, no probe), may cross the boundary', () => {
    const quiet = {
      ...s,
      boundary: 5,
      lastConcurrency429Ms: s.nowMs - 300_000,
      lastProbeMs: s.nowMs - 400_000,
    };
    expect(increaseDecision(4, 'probe', quiet, p)).toEqual({ ok: true, limit: 5, reason: 'probe' });
    // no probe before the first push-back (slow start); with slow start off, the probe applies
    expect(increaseDecision(4, 'probe', { ...quiet, pushedBack: false }, p)).toEqual({
      ok: false,
      why: 'slow_start',
    });
    expect(
      increaseDecision(4, 'probe', { ...quiet, pushedBack: false }, { ...p, slowStartPermille: 1000 }),
    ).toEqual({ ok: true, limit: 5, reason: 'probe' });
    expect(increaseDecision(4, 'probe', { ...quiet, lastConcurrency429Ms: s.nowMs - 1000 }, p)).toEqual({
      ok: false,
      why: 'quiet_period',
    });
    expect(increaseDecision(4, 'probe', { ...quiet, lastProbeMs: s.nowMs - 1000 }, p)).toEqual({
      ok: false,
      why: 'quiet_period',
    });
  });
});

describe('UtilisationWindow', () => {
  it('decides only on a full window: high share → +1, used → probe candidate, idle → nothing', () => {
    const w = new UtilisationWindow(4);
    w.add(4, 4);
    w.add(4, 4);
    w.add(3, 4);
    expect(w.decision(0.75, 0.6)).toBeNull();
    w.add(1, 4);
    expect(w.decision(0.75, 0.6)).toBe('high_utilisation'); // 3 of 4 at ≥ 75 %
    w.add(1, 4);
    w.add(2, 4);
    expect(w.decision(0.75, 0.6)).toBe('probe'); // 2 of 4 high, mean 0.5
    for (let i = 0; i < 4; i++) w.add(0, 4);
    expect(w.decision(0.75, 0.6)).toBeNull();
  });
  it('starts over when the limit changes or on reset', () => {
    const w = new UtilisationWindow(2);
    w.add(4, 4);
    w.add(4, 5);
    expect(w.count).toBe(1);
    w.reset();
    expect(w.count).toBe(0);
  });
});

describe('adjustment history', () => {
  it('keeps the last N records in order', () => {
    let h = '';
    for (let i = 1; i <= 25; i++)
      h = appendHistory(h, { atMs: i, old: i, new: i + 1, reason: 'probe', inFlight: i }, 20);
    const list = parseHistory(h);
    expect(list).toHaveLength(20);
    expect(list[0]).toEqual({ atMs: 6, old: 6, new: 7, reason: 'probe', inFlight: 6 });
    expect(list[19]!.atMs).toBe(25);
    expect(parseHistory('')).toEqual([]);
  });
});

describe('slow start (a key never pushed back)', () => {
  const fresh: IncreaseState = {
    nowMs: 1_000_000,
    holdUntilMs: 0,
    boundary: null,
    lastConcurrency429Ms: 0,
    lastProbeMs: 0,
    pushedBack: false,
  };
  const p = { maxLimit: 100, probeIntervalMs: 300_000, slowStartPermille: 2000 };
  const ss = (limit: number) => ({ ok: true, limit, reason: 'slow_start' });

  it('high utilisation multiplies by the factor: 8 → 16 → 32 → 64 → 100 (the max)', () => {
    expect(increaseDecision(8, 'high_utilisation', fresh, p)).toEqual(ss(16));
    expect(increaseDecision(16, 'high_utilisation', fresh, p)).toEqual(ss(32));
    expect(increaseDecision(32, 'high_utilisation', fresh, p)).toEqual(ss(64));
    expect(increaseDecision(64, 'high_utilisation', fresh, p)).toEqual(ss(100));
    expect(increaseDecision(100, 'high_utilisation', fresh, p)).toEqual({ ok: false, why: 'max' });
  });
  it('at least +1 (a small factor on a small limit), bounded by the max', () => {
    expect(increaseDecision(1, 'high_utilisation', fresh, { ...p, slowStartPermille: 1500 })).toEqual(ss(2));
    expect(increaseDecision(2, 'high_utilisation', fresh, { ...p, slowStartPermille: 1500 })).toEqual(ss(3));
    expect(increaseDecision(10, 'high_utilisation', fresh, { ...p, slowStartPermille: 1500 })).toEqual(
      ss(15),
    );
    expect(increaseDecision(9, 'high_utilisation', fresh, { ...p, maxLimit: 10 })).toEqual(ss(10));
  });
  it('never reaches a known boundary (a fixed-mode 429 recorded it)', () => {
    expect(increaseDecision(8, 'high_utilisation', { ...fresh, boundary: 12 }, p)).toEqual(ss(11));
    expect(increaseDecision(10, 'high_utilisation', { ...fresh, boundary: 11 }, p)).toEqual({
      ok: false,
      why: 'boundary',
    });
  });
  it('the first push-back cuts no higher than the limit before the last slow-start step (ssthresh)', () => {
    // 32 → 64 overshot an upstream of 40: refused at 60 in flight → min(51, 32) = 32
    expect(decreaseFor429(64, 'concurrency', 60, false, P, 32)).toEqual({
      limit: 32,
      reason: 'concurrency_429',
    });
    // the plain cut is lower anyway
    expect(decreaseFor429(16, 'concurrency', 5, false, P, 8)).toEqual({
      limit: 4,
      reason: 'concurrency_429',
    });
    // never below the minimum; nothing when it would not lower the limit
    expect(decreaseFor429(4, 'concurrency', 9, false, { ...P, minLimit: 3 }, 2)).toEqual({
      limit: 3,
      reason: 'concurrency_429',
    });
    expect(decreaseFor429(8, 'concurrency', 20, false, P, 8)).toBeNull();
    // an unknown 429 stays mild
    expect(decreaseFor429(64, 'unknown', 60, false, P, 32)).toEqual({ limit: 57, reason: 'unknown_429' });
  });
  it('ends with the first push-back: +1 from then on (AIMD)', () => {
    expect(increaseDecision(32, 'high_utilisation', { ...fresh, pushedBack: true }, p)).toEqual({
      ok: true,
      limit: 33,
      reason: 'high_utilisation',
    });
  });
  it('a factor of 1 (or a hold) turns it off', () => {
    expect(increaseDecision(8, 'high_utilisation', fresh, { ...p, slowStartPermille: 1000 })).toEqual({
      ok: true,
      limit: 9,
      reason: 'high_utilisation',
    });
    expect(increaseDecision(8, 'high_utilisation', { ...fresh, holdUntilMs: fresh.nowMs + 1 }, p)).toEqual({
      ok: false,
      why: 'hold',
    });
  });
});
