import { afterEach, describe, expect, it, vi } from 'vitest';
import type { FastifyRequest } from 'fastify';
import type { AlertsService } from '../../alerts/services/alerts.service.js';
import { loadConfig } from '../../config/app-config.js';
import type { RateLimitService, Verdict } from '../../rate-limit/rate-limit.service.js';
import type { BudgetService } from '../../spend/services/budget.service.js';
import { SpendBudgets } from './spend-budgets.js';

/** SpendBudgets with a recording limiter: what it sends to settle and renew (docs/spend.md "Budgets"). */
function setup(ttlMs = 3000) {
  const settled: unknown[] = [];
  const renewed: { res: string; member: string }[][] = [];
  let renewAnswer: (n: number) => (boolean | null)[] = (n) => Array<boolean>(n).fill(true);
  const limiter = {
    deferSpend: () => ({
      policies: [
        { subject: 'key:k', keys: ['rl:{key:k}:budget:total', 'rl:{key:k}:budget:total:res'], limit: 1000 },
      ],
      member: 'inst.1',
    }),
    settleSpend: vi.fn((s: unknown) => {
      settled.push(s);
      return Promise.resolve(true);
    }),
    renewSpend: vi.fn((entries: { res: string; member: string }[]) => {
      renewed.push(entries);
      return Promise.resolve(renewAnswer(entries.length));
    }),
  } as unknown as RateLimitService;
  const rules = {
    worstCase: () => 50,
    period: () => ({ period: 'total', periodId: 'total', resetMs: 0 }),
    actualCost: () => 30,
    settlementDelta: (r: number, a: number) => a - r,
    thresholds: () => [],
  } as unknown as BudgetService;
  const config = loadConfig({ BUDGET_RESERVATION_TTL_MS: String(ttlMs) });
  const budgets = new SpendBudgets(config, rules, limiter, {} as AlertsService);
  const request = {
    headers: {},
    principal: { apiKeyId: 'k', apiKey: { budget: { limitMicros: 1000, period: 'total' } } },
  } as unknown as FastifyRequest;
  const admitted: Verdict = {
    headers: {},
    error: null,
    decision: { kind: 'admitted', outcomes: [] },
  };
  return {
    budgets,
    request,
    admitted,
    settled,
    renewed,
    limiter,
    answerRenewals: (f: (n: number) => (boolean | null)[]) => (renewAnswer = f),
  };
}

describe('SpendBudgets', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  it('renews an admitted reservation every third of the TTL until it settles; one found gone is no longer renewed', async () => {
    vi.useFakeTimers();
    const t = setup(3000);
    t.budgets.reserve(t.request, {}, [{ providerId: 'p', model: 'm' }]);
    t.budgets.admitted(t.request, t.admitted);
    expect(t.budgets.outstanding).toBe(1);
    await vi.advanceTimersByTimeAsync(999);
    expect(t.renewed).toHaveLength(0);
    await vi.advanceTimersByTimeAsync(600);
    expect(t.renewed).toEqual([
      [expect.objectContaining({ res: 'rl:{key:k}:budget:total:res', member: 'inst.1:50' })],
    ]);
    await vi.advanceTimersByTimeAsync(1000);
    expect(t.renewed).toHaveLength(2);
    // settled: no more renewals
    const s = t.budgets.settlement(t.budgets.holdOf(t.request), 'p', 'm', {} as never);
    expect(s?.settlement).toMatchObject({ member: 'inst.1', reserved: 50, actual: 30, ttlMs: 3000 });
    expect(t.budgets.outstanding).toBe(0);
    await vi.advanceTimersByTimeAsync(5000);
    expect(t.renewed).toHaveLength(2);

    // a second request whose reservation is found gone (swept, or never made) stops being renewed
    const u = setup(3000);
    u.answerRenewals((n) => Array<boolean>(n).fill(false));
    u.budgets.reserve(u.request, {}, [{ providerId: 'p', model: 'm' }]);
    u.budgets.admitted(u.request, u.admitted);
    await vi.advanceTimersByTimeAsync(1600);
    expect(u.renewed).toHaveLength(1);
    expect(u.budgets.outstanding).toBe(0);
  });

  it('a settlement whose ride was lost is sent again (it is idempotent); one that rode is not', async () => {
    const t = setup();
    t.budgets.reserve(t.request, {}, [{ providerId: 'p', model: 'm' }]);
    t.budgets.admitted(t.request, t.admitted);
    const hold = t.budgets.holdOf(t.request)!;
    const s = t.budgets.settlement(hold, 'p', 'm', {} as never)!;
    await t.budgets.settled(hold, s, 'rode');
    expect(t.settled).toHaveLength(0);
    await t.budgets.settled(hold, s, 'lost');
    expect(t.settled).toEqual([s.settlement]);
    // settled once: the relay's end has nothing left to give back
    await t.budgets.release(t.request);
    expect(t.settled).toHaveLength(1);
  });

  it('a refused request reserves nothing: nothing to renew or settle', async () => {
    const t = setup();
    t.budgets.reserve(t.request, {}, [{ providerId: 'p', model: 'm' }]);
    t.budgets.admitted(t.request, { ...t.admitted, error: new Error('429') as never });
    expect(t.budgets.outstanding).toBe(0);
    await t.budgets.release(t.request);
    expect(t.settled).toHaveLength(0);
  });
});
