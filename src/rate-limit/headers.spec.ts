import { describe, expect, it } from 'vitest';
import type { RateLimitConfig } from '../config/app-config.js';
import { rateLimitHeaders, retryAfterSeconds, tightest, type PolicyOutcome } from './headers.js';
import { ipPolicy, keyPolicy, requestPolicy, tokenBudgetPolicy, userPolicy } from './policies.js';

const config: RateLimitConfig = {
  failureMode: 'open',
  keyRpm: 60,
  userRpm: 600,
  ipRpm: 1000,
  ipAlgorithm: 'sliding_window',
  ipBurst: 100,
  decisionTimeoutMs: 100,
  adminDecisionTimeoutMs: 2000,
  admissionGrants: false,
};

function outcome(policy: PolicyOutcome['policy'], o: Partial<PolicyOutcome>): PolicyOutcome {
  return {
    policy,
    admitted: true,
    remaining: policy.limit - 1,
    current: 1,
    resetMs: 60_000,
    retryMs: 0,
    ...o,
  };
}

describe('rate-limit headers', () => {
  const key = keyPolicy(config, 'key:k', null);
  const user = userPolicy(config, 'user:u');
  const ip = ipPolicy(config, 'ip:1.2.3.4');

  it('X-RateLimit-* describe the policy with the least room; IETF headers list every request policy', () => {
    const h = rateLimitHeaders(
      [
        outcome(key, { remaining: 12, resetMs: 4_200 }),
        outcome(user, { remaining: 500, resetMs: 100 }),
        outcome(ip, { remaining: 990, resetMs: 59_001 }),
      ],
      false,
    );
    expect(h).toEqual({
      'x-ratelimit-limit': '60',
      'x-ratelimit-remaining': '12',
      'x-ratelimit-reset': '5',
      'ratelimit-policy': '"key";q=60;w=60, "user";q=600;w=60, "ip";q=1000;w=60',
      ratelimit: '"key";r=12;t=5, "user";r=500;t=1, "ip";r=990;t=60',
    });
  });

  it('on a refusal: the refusing policy that frees up last, Remaining 0, Retry-After ≥ 1 rounded up', () => {
    const outcomes = [
      outcome(key, { admitted: false, remaining: 0, retryMs: 1_200, resetMs: 1_200 }),
      outcome(user, { admitted: false, remaining: 0, retryMs: 30_001, resetMs: 30_001 }),
      outcome(ip, { remaining: 5 }),
    ];
    const h = rateLimitHeaders(outcomes, true);
    expect(h['x-ratelimit-limit']).toBe('600');
    expect(h['x-ratelimit-remaining']).toBe('0');
    expect(h['x-ratelimit-reset']).toBe('31');
    expect(h['retry-after']).toBe('31');
    expect(tightest(outcomes)!.policy.name).toBe('user');
  });

  it('Retry-After is never 0, and never rounds down', () => {
    expect(retryAfterSeconds([outcome(key, { admitted: false, retryMs: 1 })])).toBe(1);
    expect(retryAfterSeconds([outcome(key, { admitted: false, retryMs: 0 })])).toBe(1);
    expect(retryAfterSeconds([outcome(key, { admitted: false, retryMs: 2_001 })])).toBe(3);
  });

  it('token bucket: X-RateLimit-Limit is the capacity, the policy carries burst', () => {
    const tb = requestPolicy('chat', 'token_bucket', 10, 1_000, 20, 'key:k', true);
    const h = rateLimitHeaders([outcome(tb, { remaining: 19, resetMs: 100 })], false);
    expect(h['x-ratelimit-limit']).toBe('20');
    expect(h['ratelimit-policy']).toBe('"chat";q=10;w=1;burst=20');
  });

  it('the TPM budget (tokens) stays out of the request headers unless it is what refused', () => {
    const tpm = tokenBudgetPolicy(1000, 'key:k');
    const admitted = rateLimitHeaders(
      [outcome(key, { remaining: 50 }), outcome(tpm, { remaining: 3, current: 997 })],
      false,
    );
    expect(admitted['x-ratelimit-remaining']).toBe('50');
    expect(admitted['ratelimit-policy']).toBe('"key";q=60;w=60');
    const refused = rateLimitHeaders(
      [outcome(key, { remaining: 50 }), outcome(tpm, { admitted: false, remaining: 0, retryMs: 7_500 })],
      true,
    );
    expect(refused['x-ratelimit-limit']).toBe('1000');
    expect(refused['retry-after']).toBe('8');
  });
});
