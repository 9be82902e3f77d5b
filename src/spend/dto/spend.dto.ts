import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, MaxLength } from 'class-validator';
import { OWN_SPEND_GROUPS, SPEND_GROUPS, SPEND_INTERVALS } from '../domain/spend-query.js';

const FROM_DOC =
  'ISO 8601 date or date-time with a zone; rounded down to the start of its interval (UTC). Default: `to` − 24 h';
const TO_DOC =
  'ISO 8601 date or date-time with a zone, exclusive (an hour counts when it starts before `to`). Default: now';
const INTERVAL_DOC = '`hour` (at most 31 days between from and to) or `day` (UTC days; at most 366 days)';

export class SpendQueryDto {
  @ApiPropertyOptional({
    enum: SPEND_GROUPS,
    default: 'key',
    description:
      '`key`: API key id; `user`: user id; `team`: team id (null until teams exist); `model`: the model that served it (a route target’s model); `provider`: provider id',
  })
  @IsOptional()
  @IsString()
  @MaxLength(32)
  group_by?: string;

  @ApiPropertyOptional({ example: '2026-12-01T00:00:00Z', description: FROM_DOC })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  from?: string;

  @ApiPropertyOptional({ example: '2026-12-02T00:00:00Z', description: TO_DOC })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  to?: string;

  @ApiPropertyOptional({ enum: SPEND_INTERVALS, default: 'hour', description: INTERVAL_DOC })
  @IsOptional()
  @IsString()
  @MaxLength(16)
  interval?: string;
}

export class OwnSpendQueryDto extends SpendQueryDto {
  @ApiPropertyOptional({
    enum: OWN_SPEND_GROUPS,
    default: 'key',
    description: '`key`, `model` or `provider` (your own spend: no user or team split)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(32)
  declare group_by?: string;
}

export class SpendRowDto {
  @ApiProperty({
    example: '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f',
    nullable: true,
    type: String,
    description: 'The group’s id (key, user, team, provider) or the model; null: none (e.g. no team)',
  })
  group: string | null;

  @ApiProperty({ example: '2026-12-01T10:00:00.000Z', description: 'Start of the hour or UTC day' })
  interval_start: string;

  @ApiProperty({ example: 42 }) requests: number;
  @ApiProperty({ example: 12345 }) prompt_tokens: number;
  @ApiProperty({ example: 6789 }) completion_tokens: number;

  @ApiProperty({
    example: 0.005925,
    description:
      'USD: the sum of the requests’ costs in integer micro-dollars, as a decimal (exact to 6 decimals)',
  })
  cost_usd: number;
}

export class SpendResponseDto {
  @ApiProperty({
    type: [SpendRowDto],
    description: 'Only groups × intervals with requests; by interval, then group',
  })
  data: SpendRowDto[];
}
