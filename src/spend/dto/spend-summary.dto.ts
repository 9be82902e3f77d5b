import { ApiProperty } from '@nestjs/swagger';

export class SpendTotalsDto {
  @ApiProperty({ example: 42, description: 'Requests routed to a provider (priced or not)' })
  requests: number;

  @ApiProperty({ example: 0.005925, description: 'USD, the exact decimal of the summed micro-dollars' })
  cost_usd: number;
}

export class SpendPeriodsDto {
  @ApiProperty({ type: SpendTotalsDto, description: 'Since the start of the UTC day (`today_from`)' })
  today: SpendTotalsDto;

  @ApiProperty({ type: SpendTotalsDto, description: 'Since the start of the UTC month (`month_from`)' })
  month: SpendTotalsDto;
}

export class TeamSpendDto extends SpendPeriodsDto {
  @ApiProperty({
    example: '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f',
    nullable: true,
    type: String,
    description: 'null: requests by callers without a team',
  })
  team_id: string | null;

  @ApiProperty({
    example: 'research',
    nullable: true,
    type: String,
    description: 'The team’s current name; null: no team, or a team deleted since',
  })
  team_name: string | null;
}

export class ModelSpendDto extends SpendPeriodsDto {
  @ApiProperty({ example: 'gpt-4o-mini', description: 'The model that served the requests' })
  model: string;
}

export class SpendSummaryDto {
  @ApiProperty({
    example: '2026-12-06T10:15:02.000Z',
    description: 'When these sums were read (cached up to 30 s)',
  })
  generated_at: string;

  @ApiProperty({ example: '2026-12-06T00:00:00.000Z', description: 'Start of today (UTC)' })
  today_from: string;

  @ApiProperty({ example: '2026-12-01T00:00:00.000Z', description: 'Start of this month (UTC)' })
  month_from: string;

  @ApiProperty({ type: SpendPeriodsDto })
  total: SpendPeriodsDto;

  @ApiProperty({ type: [TeamSpendDto], description: 'Teams with requests this month, biggest cost first' })
  by_team: TeamSpendDto[];

  @ApiProperty({ type: [ModelSpendDto], description: 'Models with requests this month, biggest cost first' })
  by_model: ModelSpendDto[];
}
