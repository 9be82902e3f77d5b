import { describe, expect, it } from 'vitest';
import { judgeAttempt, retryDelayMs } from './backoff.js';

describe('retryDelayMs', () => {
  it('waits 1 s, 5 s, 30 s, 2 min, 10 min, then 10 min again', () => {
    expect([1, 2, 3, 4, 5, 6, 9].map(retryDelayMs)).toEqual([
      1000, 5000, 30_000, 120_000, 600_000, 600_000, 600_000,
    ]);
  });
  it('treats a nonsense count as the first failure', () => {
    expect(retryDelayMs(0)).toBe(1000);
    expect(retryDelayMs(-3)).toBe(1000);
  });
});

describe('judgeAttempt', () => {
  it('delivers on any 2xx, on any attempt', () => {
    for (const s of [200, 201, 204, 299]) expect(judgeAttempt(1, 6, s)).toEqual({ status: 'delivered' });
    expect(judgeAttempt(6, 6, 200)).toEqual({ status: 'delivered' });
  });
  it('retries other answers and no answer with the schedule until the last attempt, then fails', () => {
    expect(judgeAttempt(1, 6, 500)).toEqual({ status: 'pending', retryInMs: 1000 });
    expect(judgeAttempt(2, 6, 302)).toEqual({ status: 'pending', retryInMs: 5000 });
    expect(judgeAttempt(3, 6, null)).toEqual({ status: 'pending', retryInMs: 30_000 });
    expect(judgeAttempt(5, 6, 404)).toEqual({ status: 'pending', retryInMs: 600_000 });
    expect(judgeAttempt(6, 6, 500)).toEqual({ status: 'failed' });
    expect(judgeAttempt(1, 1, null)).toEqual({ status: 'failed' });
  });
});
