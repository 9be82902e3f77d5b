import { describe, expect, it } from 'vitest';
import {
  admitFromView,
  breakerRules,
  CLOSED,
  emptyRecord,
  HALF_OPEN,
  OPEN,
  stepBreaker,
  visibleState,
  visibleWindow,
  type BreakerOp,
  type BreakerRecord,
} from './breaker.js';

const rules = breakerRules({
  consecutiveFailures: 3,
  failureRate: 0.5,
  minRequests: 10,
  windowMs: 30_000,
  openMs: 5_000,
});
const T = 1_000_000;

function run(rec: BreakerRecord, ops: [BreakerOp, number][]) {
  let r = rec;
  const out = [];
  for (const [op, now] of ops) {
    const s = stepBreaker(r, op, now, rules);
    out.push(s);
    r = s.next;
  }
  return { rec: r, steps: out };
}
const fail = (probe = false): BreakerOp => ({ op: 'fail', probe });
const ok = (probe = false): BreakerOp => ({ op: 'ok', probe });
const claim: BreakerOp = { op: 'claim', claimMs: 30_000 };

function opened(at = T): BreakerRecord {
  return run(emptyRecord(), [
    [fail(), at],
    [fail(), at],
    [fail(), at],
  ]).rec;
}

describe('breaker rules', () => {
  it('closed → open after N consecutive failures; a success in between resets the count', () => {
    const { rec, steps } = run(emptyRecord(), [
      [fail(), T],
      [fail(), T + 1],
      [ok(), T + 2],
      [fail(), T + 3],
      [fail(), T + 4],
    ]);
    expect(rec.s).toBe(CLOSED);
    expect(rec.cf).toBe(2);
    expect(steps.every((s) => s.transition === '')).toBe(true);
    const third = stepBreaker(rec, fail(), T + 5, rules);
    expect(third.transition).toBe('open');
    expect(third.next).toMatchObject({ s: OPEN, cf: 3, ou: T + 5 + 5_000, pu: 0 });
    expect(visibleState(third.next, T + 6)).toBe('open');
  });

  it('closed → open by the failure rate once the window holds the minimum requests', () => {
    // success, failure alternating: never 3 in a row
    let r = emptyRecord();
    for (let i = 0; i < 9; i++) {
      const s = stepBreaker(r, i % 2 ? fail() : ok(), T + i, rules);
      expect(s.transition).toBe('');
      r = s.next;
    }
    // 9 requests, 4 failures: below the minimum of 10 requests, whatever the rate
    expect(r).toMatchObject({ s: CLOSED, wr: 9, wf: 4, cf: 0 });
    // 10th: a success → 40 %, closed; a failure → 50 % (at the rate) → open
    expect(stepBreaker(r, ok(), T + 9, rules).next.s).toBe(CLOSED);
    const s = stepBreaker(r, fail(), T + 9, rules);
    expect(s.transition).toBe('open');
    expect(s.next).toMatchObject({ s: OPEN, wr: 10, wf: 5, cf: 1 });
    // below the rate with the minimum reached: 4 of 11 stays closed
    const low = stepBreaker({ ...r, wr: 10, wf: 3, cf: 0 }, fail(), T + 9, rules);
    expect(low.next).toMatchObject({ s: CLOSED, wr: 11, wf: 4 });
  });

  it('the window restarts after BREAKER_WINDOW_MS: old failures no longer count', () => {
    let r = emptyRecord();
    for (let i = 0; i < 9; i++) r = stepBreaker(r, i % 2 ? ok() : fail(), T, rules).next;
    expect(r).toMatchObject({ ws: T, wr: 9, wf: 5 });
    expect(visibleWindow(r, T + 29_999, rules)).toEqual({ failures: 5, requests: 9 });
    expect(visibleWindow(r, T + 30_000, rules)).toEqual({ failures: 0, requests: 0 });
    const s = stepBreaker(r, ok(), T + 30_000, rules);
    expect(s.next).toMatchObject({ ws: T + 30_000, wr: 1, wf: 0, s: CLOSED });
  });

  it('batched successes add to the window; they reset the count only when the last came after the last failure', () => {
    const r = run(emptyRecord(), [
      [fail(), T],
      [fail(), T + 100],
    ]).rec;
    const before = stepBreaker(r, { op: 'add', n: 5, lastMs: T + 50 }, T + 200, rules);
    expect(before.next).toMatchObject({ cf: 2, wr: 7, wf: 2 });
    const after = stepBreaker(r, { op: 'add', n: 5, lastMs: T + 150 }, T + 200, rules);
    expect(after.next).toMatchObject({ cf: 0, wr: 7 });
    // while open they change nothing (no write)
    const o = opened();
    expect(stepBreaker(o, { op: 'add', n: 5, lastMs: T + 150 }, T + 200, rules).changed).toBe(false);
  });

  it('open sends nothing; at open-until exactly one probe is claimed (half_open)', () => {
    const o = opened();
    expect(stepBreaker(o, claim, T + 4_999, rules)).toMatchObject({ admission: 'deny', changed: false });
    expect(admitFromView(o, 'auto', T + 4_999)).toBe('deny');
    expect(admitFromView(o, 'auto', T + 5_000)).toBe('claim');
    expect(visibleState(o, T + 5_000)).toBe('half_open');
    const first = stepBreaker(o, claim, T + 5_000, rules);
    expect(first).toMatchObject({ admission: 'probe', transition: 'half_open', changed: true });
    expect(first.next).toMatchObject({ s: HALF_OPEN, pu: T + 35_000 });
    const second = stepBreaker(first.next, claim, T + 5_001, rules);
    expect(second).toMatchObject({ admission: 'deny', changed: false, transition: '' });
    expect(admitFromView(first.next, 'auto', T + 5_001)).toBe('deny');
  });

  it('probe success → closed with every counter reset', () => {
    const h = stepBreaker(opened(), claim, T + 5_000, rules).next;
    // a late non-probe success does not close it
    expect(stepBreaker(h, ok(false), T + 5_100, rules).changed).toBe(false);
    const s = stepBreaker(h, ok(true), T + 5_200, rules);
    expect(s.transition).toBe('closed');
    expect(s.next).toMatchObject({ s: CLOSED, cf: 0, wf: 0, wr: 0, ws: T + 5_200, ou: 0, pu: 0 });
    expect(admitFromView(s.next, 'auto', T + 5_201)).toBe('allow');
  });

  it('probe failure → open again for another BREAKER_OPEN_MS; a late non-probe failure does not', () => {
    const h = stepBreaker(opened(), claim, T + 5_000, rules).next;
    const late = stepBreaker(h, fail(false), T + 5_100, rules);
    expect(late.transition).toBe('');
    expect(late.next).toMatchObject({ s: HALF_OPEN, cf: 4 });
    const s = stepBreaker(late.next, fail(true), T + 5_200, rules);
    expect(s.transition).toBe('open');
    expect(s.next).toMatchObject({ s: OPEN, ou: T + 10_200, pu: 0, cf: 5 });
    expect(stepBreaker(s.next, claim, T + 10_199, rules).admission).toBe('deny');
    expect(stepBreaker(s.next, claim, T + 10_200, rules).admission).toBe('probe');
  });

  it('a probe claim that expired (the probe died) lets another probe go', () => {
    const h = stepBreaker(opened(), claim, T + 5_000, rules).next;
    expect(stepBreaker(h, claim, T + 34_999, rules).admission).toBe('deny');
    expect(admitFromView(h, 'auto', T + 35_000)).toBe('claim');
    const again = stepBreaker(h, claim, T + 35_000, rules);
    expect(again).toMatchObject({ admission: 'probe', transition: '', changed: true });
    expect(again.next).toMatchObject({ s: HALF_OPEN, pu: T + 65_000 });
  });

  it('an unused probe claim is given back by its token only; then the next claim may probe at once', () => {
    const h = stepBreaker(opened(), claim, T + 5_000, rules).next;
    expect(h.pu).toBe(T + 35_000);
    const stale = stepBreaker(h, { op: 'release', token: T + 1 }, T + 5_100, rules);
    expect(stale.changed).toBe(false);
    const r = stepBreaker(h, { op: 'release', token: h.pu }, T + 5_100, rules);
    expect(r).toMatchObject({ changed: true, transition: '' });
    expect(r.next).toMatchObject({ s: HALF_OPEN, pu: 0 });
    expect(visibleState(r.next, T + 5_100)).toBe('half_open');
    expect(admitFromView(r.next, 'auto', T + 5_101)).toBe('claim');
    expect(stepBreaker(r.next, claim, T + 5_101, rules)).toMatchObject({ admission: 'probe' });
    // nothing to release when not half-open
    expect(stepBreaker(opened(), { op: 'release', token: 0 }, T, rules).changed).toBe(false);
  });

  it('forced open / closed override the view; auto follows it', () => {
    const o = opened();
    expect(admitFromView(undefined, 'open', T)).toBe('deny');
    expect(admitFromView(emptyRecord(), 'open', T)).toBe('deny');
    expect(admitFromView(o, 'closed', T)).toBe('allow');
    expect(admitFromView(o, 'auto', T)).toBe('deny');
    expect(admitFromView(undefined, 'auto', T)).toBe('allow');
  });

  it('claim on a closed record answers allow without writing; get never writes; versions grow on change', () => {
    expect(stepBreaker(emptyRecord(), claim, T, rules)).toMatchObject({ admission: 'allow', changed: false });
    expect(stepBreaker(opened(), { op: 'get' }, T, rules).changed).toBe(false);
    const a = stepBreaker(emptyRecord(), fail(), T, rules);
    expect(a.next.v).toBe(T);
    expect(stepBreaker(a.next, fail(), T, rules).next.v).toBe(T + 1);
    expect(stepBreaker(a.next, fail(), T + 50, rules).next.v).toBe(T + 50);
  });

  it('converts the configured rate to per mille', () => {
    expect(rules.failureRatePermille).toBe(500);
    expect(
      breakerRules({ consecutiveFailures: 1, failureRate: 0.125, minRequests: 1, windowMs: 1, openMs: 1 })
        .failureRatePermille,
    ).toBe(125);
  });
});
