import { ApiProperty, ApiPropertyOptional, type ApiPropertyOptions } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Length,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateNested,
} from 'class-validator';
import { PRIORITIES, ROLES, type Priority, type Role } from '../../common/principal.js';
import { OptionalNotNull } from '../../common/validation.js';
import {
  BUDGET_PERIODS,
  microsToUsd,
  TEAM_ROLES,
  type BudgetPeriod,
  type TeamRole,
} from '../domain/team-rules.js';
import type { Team } from '../team.entity.js';
import type { User } from '../user.entity.js';
import { ApiKeyLimitsDto, ApiKeyLimitsInputDto } from './api-key.dto.js';
import { IsMicroUsd } from './budget.dto.js';

const trim = ({ value }: { value: unknown }): unknown => (typeof value === 'string' ? value.trim() : value);

export const TEAM_ID_EXAMPLE = '3f6d2a1b-8c4e-4b7a-9e21-5d0c7f1a2b3c';

export class TeamBudgetDto {
  @ApiProperty({
    example: 250,
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
    example: 'month',
    description: 'UTC calendar period (day, ISO week from Monday, month) or `total`',
  })
  @IsIn(BUDGET_PERIODS)
  period: BudgetPeriod;
}

const NAME: ApiPropertyOptions = {
  example: 'search-team',
  minLength: 1,
  maxLength: 100,
  description: 'Unique, case-insensitive',
};
const WEIGHT_TEXT =
  'Fair-share weight (integer 1..1000, default 1): when a provider queue is contended, waiting requests of one priority are dispatched across teams in proportion to it (docs/relay.md, Fair share across teams; requests without a team share one flow of weight 1).';
const WEIGHT: ApiPropertyOptions = { example: 3, minimum: 1, maximum: 1000, description: WEIGHT_TEXT };
const LIMITS: ApiPropertyOptions = {
  type: () => ApiKeyLimitsInputDto,
  nullable: true,
  description:
    "The team's own limits, shared by all its members' keys: `rpm` (requests per minute, policy `team`) and `tpm` (tokens per minute, policy `team_tpm`), each null = none. The tightest of key, user and team applies.",
};
const BUDGET_TEXT =
  'The team\'s spend budget, shared by all its members\' keys and sessions (docs/spend.md "Budgets"): each request reserves its worst-case cost in the same atomic step as the rate limits and settles to its actual cost; over budget → 429 `budget_exceeded` with Retry-After (seconds to the period reset; none for `total`). The tightest of key, user and team applies. null = none.';
const BUDGET: ApiPropertyOptions = { type: () => TeamBudgetDto, nullable: true, description: BUDGET_TEXT };
const ALLOWED: ApiPropertyOptions = {
  example: ['gpt-4o-mini', 'meta-llama/*'],
  nullable: true,
  type: [String],
  description:
    "Model ids or `*` patterns the team's keys may call; null = all. A key's own allowed_models still apply: a model must be allowed by both (403 model_not_allowed).",
};
const MAX_PRIORITY: ApiPropertyOptions = {
  enum: PRIORITIES,
  example: 'high',
  description:
    "Highest X-Priority the team's keys may use (default urgent: no ceiling beyond each key's own)",
};

export class CreateTeamDto {
  @ApiProperty(NAME)
  @Transform(trim)
  @IsString()
  @Length(1, 100)
  name: string;

  @ApiPropertyOptional(WEIGHT)
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1000)
  weight?: number;

  @ApiPropertyOptional(LIMITS)
  @IsOptional()
  @ValidateNested()
  @Type(() => ApiKeyLimitsInputDto)
  limits?: ApiKeyLimitsInputDto | null;

  @ApiPropertyOptional(BUDGET)
  @IsOptional()
  @ValidateNested()
  @Type(() => TeamBudgetDto)
  budget?: TeamBudgetDto | null;

  @ApiPropertyOptional(ALLOWED)
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @MinLength(1, { each: true })
  @MaxLength(200, { each: true })
  allowed_models?: string[] | null;

  @ApiPropertyOptional(MAX_PRIORITY)
  @IsOptional()
  @IsIn(PRIORITIES)
  max_priority?: Priority;
}

/** Every field optional; send at least one. null clears limits, budget and allowed_models. */
export class UpdateTeamDto {
  @ApiPropertyOptional(NAME)
  @OptionalNotNull()
  @Transform(trim)
  @IsString()
  @Length(1, 100)
  name?: string;

  @ApiPropertyOptional(WEIGHT)
  @OptionalNotNull()
  @IsInt()
  @Min(1)
  @Max(1000)
  weight?: number;

  @ApiPropertyOptional(LIMITS)
  @IsOptional()
  @ValidateNested()
  @Type(() => ApiKeyLimitsInputDto)
  limits?: ApiKeyLimitsInputDto | null;

  @ApiPropertyOptional(BUDGET)
  @IsOptional()
  @ValidateNested()
  @Type(() => TeamBudgetDto)
  budget?: TeamBudgetDto | null;

  @ApiPropertyOptional(ALLOWED)
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @MinLength(1, { each: true })
  @MaxLength(200, { each: true })
  allowed_models?: string[] | null;

  @ApiPropertyOptional(MAX_PRIORITY)
  @OptionalNotNull()
  @IsIn(PRIORITIES)
  max_priority?: Priority;
}

export class AddTeamMemberDto {
  @ApiPropertyOptional({
    enum: TEAM_ROLES,
    example: 'member',
    description:
      "`member` (default) or `team_admin` (manages this team's members and their keys). Only an admin or this team's team_admin may set it.",
  })
  @OptionalNotNull()
  @IsIn(TEAM_ROLES)
  role?: TeamRole;
}

export class TeamBudgetViewDto {
  @ApiProperty({ example: 250 })
  limit_usd: number;

  @ApiProperty({ enum: BUDGET_PERIODS, example: 'month' })
  period: BudgetPeriod;

  @ApiProperty({ example: true, description: 'Always true: budgets are enforced (docs/spend.md "Budgets")' })
  enforced: boolean;
}

export class TeamMemberDto {
  @ApiProperty({ example: '7c1e2f0a-5b8d-4e7f-a3c2-1d9e8f7a6b5c', format: 'uuid' })
  user_id: string;

  @ApiProperty({ example: 'ada@example.com', nullable: true, type: String })
  email: string | null;

  @ApiProperty({ example: 'Ada Lovelace', nullable: true, type: String })
  name: string | null;

  @ApiProperty({ enum: ROLES, example: 'developer', description: "The user's own role" })
  user_role: Role;

  @ApiProperty({ enum: TEAM_ROLES, example: 'member' })
  team_role: TeamRole;
}

export class TeamDto {
  @ApiProperty({ example: TEAM_ID_EXAMPLE, format: 'uuid' })
  id: string;

  @ApiProperty({ example: 'search-team' })
  name: string;

  @ApiProperty({ example: 3, description: WEIGHT_TEXT })
  weight: number;

  @ApiProperty({ type: () => ApiKeyLimitsDto })
  limits: ApiKeyLimitsDto;

  @ApiProperty({ type: () => TeamBudgetViewDto, nullable: true, description: BUDGET_TEXT })
  budget: TeamBudgetViewDto | null;

  @ApiProperty({ example: ['gpt-4o-mini'], nullable: true, type: [String] })
  allowed_models: string[] | null;

  @ApiProperty({ enum: PRIORITIES, example: 'high' })
  max_priority: Priority;

  @ApiProperty({ example: 2, description: 'How many users are members' })
  member_count: number;

  @ApiProperty({ example: '2026-12-06T03:00:00.000Z' })
  created_at: string;

  @ApiProperty({ example: '2026-12-06T03:00:00.000Z' })
  updated_at: string;
}

export class TeamWithMembersDto extends TeamDto {
  @ApiProperty({ type: [TeamMemberDto] })
  members: TeamMemberDto[];
}

export class TeamListDto {
  @ApiProperty({ type: [TeamDto] })
  data: TeamDto[];

  @ApiProperty({ example: false })
  has_more: boolean;
}

export class ListTeamsQueryDto {
  @ApiPropertyOptional({ example: 100, minimum: 1, maximum: 500 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit?: number;

  @ApiPropertyOptional({ example: 0, minimum: 0 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  offset?: number;
}

export function toTeamDto(team: Team, memberCount: number): TeamDto {
  return {
    id: team.id,
    name: team.name,
    weight: team.weight,
    limits: { rpm: team.rpm, tpm: team.tpm },
    budget:
      team.budgetLimitMicros !== null && team.budgetPeriod !== null
        ? {
            limit_usd: microsToUsd(Number(team.budgetLimitMicros)),
            period: team.budgetPeriod,
            enforced: true,
          }
        : null,
    allowed_models: team.allowedModels,
    max_priority: team.maxPriority,
    member_count: memberCount,
    created_at: team.createdAt.toISOString(),
    updated_at: team.updatedAt.toISOString(),
  };
}

export function toTeamMemberDto(user: User): TeamMemberDto {
  return {
    user_id: user.id,
    email: user.email,
    name: user.name,
    user_role: user.role,
    team_role: user.teamRole ?? 'member',
  };
}
