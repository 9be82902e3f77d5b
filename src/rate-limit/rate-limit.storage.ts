import { Injectable } from '@nestjs/common';
import type { ThrottlerStorage } from '@nestjs/throttler';
import { seconds } from './headers.js';
import { requestPolicy } from './policies.js';
import { RateLimitService } from './rate-limit.service.js';

type ThrottlerStorageRecord = Awaited<ReturnType<ThrottlerStorage['increment']>>;

/**
 * @nestjs/throttler's storage port over our store: `increment` is one exact sliding-window check
 * that adds the hit only when it is admitted (check-before-add; a blocked caller consumes nothing,
 * so `blockDuration` is not used). Our RateLimitGuard does not call it per policy — it evaluates all
 * policies in one script through RateLimitService — but any stock ThrottlerGuard (or a
 * `@UseGuards(ThrottlerGuard)` somewhere) gets the same exact, distributed semantics.
 */
@Injectable()
export class RateLimitStorage implements ThrottlerStorage {
  constructor(private readonly limiter: RateLimitService) {}

  async increment(
    key: string,
    ttl: number,
    limit: number,
    _blockDuration: number,
    throttlerName: string,
  ): Promise<ThrottlerStorageRecord> {
    const policy = requestPolicy(throttlerName, 'sliding_window', limit, ttl, limit, `throttler:${key}`);
    const decision = await this.limiter.decide([policy]);
    if (decision.kind === 'overloaded')
      return { totalHits: limit + 1, timeToExpire: 1, isBlocked: true, timeToBlockExpire: 1 };
    if (decision.kind === 'unavailable') {
      const open = this.limiter.failureMode === 'open';
      return { totalHits: open ? 0 : limit + 1, timeToExpire: 1, isBlocked: !open, timeToBlockExpire: 1 };
    }
    const o = decision.outcomes[0]!;
    return {
      totalHits: o.admitted ? o.current : limit + 1,
      timeToExpire: seconds(o.resetMs),
      isBlocked: !o.admitted,
      timeToBlockExpire: Math.max(1, seconds(o.retryMs)),
    };
  }
}
