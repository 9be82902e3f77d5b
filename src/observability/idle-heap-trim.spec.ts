import { describe, expect, it } from 'vitest';
import { DEFAULT_TRIM_POLICY, trimDecision, type TrimState } from './idle-heap-trim.js';

const MB = 2 ** 20;

function run(samples: [requests: number, heapMb: number][], baselineMb = 100): boolean[] {
  let state: TrimState = { lastCount: 0, idle: 0, baseline: baselineMb * MB };
  return samples.map(([requests, heap]) => {
    const d = trimDecision(state, requests, heap * MB, DEFAULT_TRIM_POLICY);
    state = d.trim ? { ...d.state, baseline: 100 * MB } : d.state;
    return d.trim;
  });
}

describe('trimDecision', () => {
  it('never trims while requests are being served, however large the heap', () => {
    expect(
      run([
        [10, 300],
        [20, 300],
        [30, 300],
        [40, 300],
      ]),
    ).toEqual([false, false, false, false]);
  });

  it('trims at most once per idle period, even when the heap did not shrink', () => {
    expect(
      run([
        [10, 250],
        [10, 250],
        [10, 250],
        [10, 250],
        [11, 250],
        [11, 250],
        [11, 250],
      ]),
    ).toEqual([false, false, true, false, false, false, true]);
  });

  it('trims once after a burst, when idle for two checks and the heap grew', () => {
    expect(
      run([
        [10, 250],
        [20, 260],
        [20, 260],
        [20, 260],
        [20, 260],
        [20, 260],
      ]),
    ).toEqual([false, false, false, true, false, false]);
  });

  it('does not trim when the heap has not grown enough since the last trim', () => {
    expect(
      run([
        [0, 110],
        [0, 110],
        [0, 110],
        [0, 110],
      ]),
    ).toEqual([false, false, false, false]);
    // 25 % growth but under 16 MB: not worth a full GC
    expect(
      run(
        [
          [0, 50],
          [0, 50],
          [0, 50],
        ],
        40,
      ),
    ).toEqual([false, false, false]);
  });
});
