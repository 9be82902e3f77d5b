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
  };
  const p = { maxLimit: 100, probeIntervalMs: 300_000 };
  it('high utilisation: +1 outside a hold, below the known boundary, up to the max', () => {
    expect(increaseDecision(4, 'high_utilisation', s, p)).toEqual({ ok: true, limit: 5 });
    expect(increaseDecision(4, 'high_utilisation', { ...s, holdUntilMs: s.nowMs + 1 }, p)).toEqual({
      ok: false,
      why: 'hold',
    });
    expect(increaseDecision(4, 'high_utilisation', { ...s, boundary: 5 }, p)).toEqual({
      ok: false,
      why: 'boundary',
    });
    expect(increaseDecision(3, 'high_utilisation', { ...s, boundary: 5 }, p)).toEqual({ ok: true, limit: 4 });
    expect(increaseDecision(100, 'high_utilisation', s, p)).toEqual({ ok: false, why: 'max' });
  });
  it('probe: only after a quiet period (no concurrency 429, no probe), may cross the boundary', () => {
    const quiet = {
      ...s,
      boundary: 5,
      lastConcurrency429Ms: s.nowMs - 300_000,
      lastProbeMs: s.nowMs - 400_000,
    };
    expect(increaseDecision(4, 'probe', quiet, p)).toEqual({ ok: true, limit: 5 });
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
