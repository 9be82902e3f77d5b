import { ApiProperty } from '@nestjs/swagger';

export const BUDGET_STATE_EXAMPLE = {
  subject: 'key:7d1f6c2e-3c4b-4e0a-9a51-2b8f1c0e6d42',
  limit_usd: 25,
  period: 'day',
  period_id: 'd2026-12-06',
  reset_at: '2026-12-07T00:00:00.000Z',
  spent_usd: 3.41205,
  reserved_usd: 0.122,
  remaining_usd: 21.46595,
  reservations: 2,
};

/** A subject's spend budget and its counter for the current period (docs/spend.md "Budgets"). */
export class BudgetStateDto {
  @ApiProperty({
    example: BUDGET_STATE_EXAMPLE.subject,
    description: '`key:{id}`, `user:{id}` or `team:{id}`',
  })
  subject: string;

  @ApiProperty({ example: 25 })
  limit_usd: number;

  @ApiProperty({ enum: ['day', 'week', 'month', 'total'], example: 'day' })
  period: string;

  @ApiProperty({
    example: 'd2026-12-06',
    description: 'The current period: `d<day>`, `w<its Monday>`, `m<month>` or `total`',
  })
  period_id: string;

  @ApiProperty({
    example: BUDGET_STATE_EXAMPLE.reset_at,
    nullable: true,
    type: String,
    description: 'When the period ends (UTC); null for `total` (never)',
  })
  reset_at: string | null;

  @ApiProperty({
    example: BUDGET_STATE_EXAMPLE.spent_usd,
    description: 'Settled spend this period: the counter minus the outstanding reservations',
  })
  spent_usd: number;

  @ApiProperty({
    example: BUDGET_STATE_EXAMPLE.reserved_usd,
    description:
      "Held by requests in flight (each reserves its worst case until it settles, or until its reservation's deadline if its instance died)",
  })
  reserved_usd: number;

  @ApiProperty({
    example: BUDGET_STATE_EXAMPLE.remaining_usd,
    description: 'limit − spent − reserved, never below 0: what new requests may still reserve',
  })
  remaining_usd: number;

  @ApiProperty({ example: 2, description: 'Outstanding reservations (requests in flight)' })
  reservations: number;
}
