import { Injectable } from '@nestjs/common';
import type { Principal } from '../../common/principal.js';
import type { ReportResult, RiderInput } from '../../key-pool/key-pool.types.js';
import {
  RateLimitService,
  TOKEN_CHARGE_STEP,
  type SpendSettlement,
} from '../../rate-limit/rate-limit.service.js';

/**
 * The answer path's composition point (issue 18): the client key's token charge (RateLimit) rides
 * in the key pool's release of the answer's lease (KeyPool's `report(…, rider)`), so an answer costs
 * ONE store call — release, upstream key TPM, Adaptive's report contribution and the client's TPM —
 * instead of two. On a Redis Cluster (the client's keys and the provider's live in different hash
 * slots) the charge stays a step of its own (`chargeTokens`), run after the release. Neither module
 * knows the other: the relay hands RateLimit's step to KeyPool as a rider.
 */
@Injectable()
export class AnswerCharge {
  constructor(private readonly rateLimit: RateLimitService) {}

  /**
   * The rider for the answer's release (null: nothing to charge, or the charge cannot ride): the
   * TPM charge and the spend budgets' settlement (docs/spend.md "Budgets") in one step.
   */
  rider(
    principal: Principal | undefined,
    tokens: number,
    spend: SpendSettlement | null = null,
  ): RiderInput | null {
    if (!this.rateLimit.chargeRides) return null;
    const inputs = this.rateLimit.answerCharge(principal, tokens, spend);
    return inputs ? { rider: TOKEN_CHARGE_STEP, keys: inputs.keys, args: inputs.args } : null;
  }

  /** After the release: counts the ridden charge, or charges on its own when it could not ride. */
  settle(
    principal: Principal | undefined,
    tokens: number,
    rider: RiderInput | null,
    result: ReportResult,
  ): void {
    if (rider) {
      if (tokens > 0) this.rateLimit.chargeSettled(tokens, result.rode === true);
    } else if (tokens > 0) void this.rateLimit.chargeTokens(principal, tokens);
  }
}
