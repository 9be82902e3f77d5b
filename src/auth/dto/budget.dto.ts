import { ApiProperty } from '@nestjs/swagger';
import { IsIn, Max, Min, ValidateBy, type ValidationOptions } from 'class-validator';
import { BUDGET_PERIODS, microsToUsd, type BudgetPeriod } from '../domain/team-rules.js';

export const BUDGET_TEXT =
  'Spend budget (docs/spend.md "Budgets"): each request reserves its worst-case cost in the same atomic step as the rate limits, and settles to its actual cost; over budget → 429 `budget_exceeded` with Retry-After (seconds to the period reset; none for `total`). The tightest of key, user and team applies. null = none.';

/**
 * A finite number with at most 6 decimals (a whole number of micro-dollars). class-validator's
 * `IsNumber({ maxDecimalPlaces })` throws on numbers JavaScript prints in exponent form (1e-7), which
 * would answer 500; this check never throws.
 */
export function IsMicroUsd(options?: ValidationOptions): PropertyDecorator {
  return ValidateBy(
    {
      name: 'isMicroUsd',
      validator: {
        validate: (v: unknown) => typeof v === 'number' && Number.isFinite(v) && Number(v.toFixed(6)) === v,
        defaultMessage: (a) => `${a?.property ?? 'value'} must be a number with at most 6 decimals`,
      },
    },
    options,
  );
}

/** A spend budget as written (keys, users; teams use the same shape). */
export class BudgetDto {
  @ApiProperty({
    example: 25,
    minimum: 0.000001,
    maximum: 1_000_000_000,
    description: 'USD per period, at most 6 decimals (stored as integer micro-dollars)',
  })
  @IsMicroUsd()
  @Min(0.000001)
  @Max(1_000_000_000)
  limit_usd: number;

  @ApiProperty({
    enum: BUDGET_PERIODS,
    example: 'day',
    description: 'UTC calendar period (day, ISO week from Monday, month) or `total` (never resets)',
  })
  @IsIn(BUDGET_PERIODS)
  period: BudgetPeriod;
}

export class BudgetViewDto {
  @ApiProperty({ example: 25 })
  limit_usd: number;

  @ApiProperty({ enum: BUDGET_PERIODS, example: 'day' })
  period: BudgetPeriod;
}

export function budgetView(
  micros: string | number | null,
  period: BudgetPeriod | null,
): BudgetViewDto | null {
  return micros === null || period === null ? null : { limit_usd: microsToUsd(Number(micros)), period };
}

export function budgetInput(
  b: BudgetDto | null | undefined,
): { limitUsd: number; period: BudgetPeriod } | null | undefined {
  if (b === undefined) return undefined;
  return b === null ? null : { limitUsd: b.limit_usd, period: b.period };
}
