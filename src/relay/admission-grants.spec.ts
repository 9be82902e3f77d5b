import { describe, expect, it } from 'vitest';
import type { RateLimitConfig } from '../config/app-config.js';
import { rateLimitHeaders, type PolicyOutcome } from '../rate-limit/headers.js';
import { keyPolicy, tokenBudgetPolicy, userPolicy } from '../rate-limit/policies.js';
import type { Verdict } from '../rate-limit/rate-limit.service.js';
import { unitVerdict } from './admission-grants.js';

const config: RateLimitConfig = {
  failureMode: 'open',
  keyRpm: 100,
  userRpm: 600,
  ipRpm: 1000,
  ipAlgorithm: 'sliding_window',
  ipBurst: 100,
  decisionTimeoutMs: 100,
  adminDecisionTimeoutMs: 2000,
  admissionGrants: true,
};

function outcome(policy: PolicyOutcome['policy'], remaining: number): PolicyOutcome {
  return {
    policy,
    admitted: true,
    remaining,
    current: policy.limit - remaining,
    resetMs: 60_000,
    retryMs: 0,
  };
}

describe('unitVerdict (the headers of a grant unit)', () => {
  const key = keyPolicy(config, 'key:k', null);
  const user = userPolicy(config, 'user:u');
  const tpm = tokenBudgetPolicy(10_000, 'key:k');
  // a block of B = 6 taken at a key with 10 requests in its window: 100 - 10 - 6 = 84 left after it
  const outcomes = [outcome(key, 84), outcome(user, 584), outcome(tpm, 9_000)];
  const block: Verdict = {
    headers: rateLimitHeaders(outcomes, false),
    error: null,
    decision: { kind: 'admitted', outcomes },
  };

  it('unit k of a block of B: every request window shows the block remaining + B − k', () => {
    const seen = [1, 2, 3, 4, 5, 6].map((k) => unitVerdict(block, 6, k).headers['x-ratelimit-remaining']);
    expect(seen).toEqual(['89', '88', '87', '86', '85', '84']); // 100 - 10 - k: as if decided alone
    const first = unitVerdict(block, 6, 1);
    expect(first.headers.ratelimit).toBe('"key";r=89;t=60, "user";r=589;t=60');
    // the token budget is not a request window: untouched
    const tokens = first.decision.kind === 'admitted' ? first.decision.outcomes[2]! : null;
    expect(tokens?.remaining).toBe(9_000);
    // the block's own verdict is not changed
    expect(block.headers['x-ratelimit-remaining']).toBe('84');
  });

  it('the last unit, and refusals, keep the verdict as it is', () => {
    expect(unitVerdict(block, 6, 6)).toBe(block);
    const refused: Verdict = { ...block, decision: { kind: 'limited', outcomes } };
    expect(unitVerdict(refused, 6, 1)).toBe(refused);
  });
});
