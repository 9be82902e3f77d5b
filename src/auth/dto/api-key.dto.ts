import { ApiProperty, ApiPropertyOptional, OmitType, PartialType } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsISO8601,
  IsOptional,
  IsString,
  IsUUID,
  Length,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateNested,
} from 'class-validator';
import { PRIORITIES, ROLES, type Priority, type Role } from '../../common/principal.js';
import type { ApiKey } from '../api-key.entity.js';
import { maskApiKey } from '../api-key-format.js';
import { BUDGET_TEXT, BudgetDto, BudgetViewDto, budgetView } from './budget.dto.js';

export const KEY_EXAMPLE = 'fg_3Xq9v0bR2mYwT8kLpZ1sNcD4hJ6gF7aE5uW0iO9yQ2e';

export class ApiKeyLimitsInputDto {
  @ApiPropertyOptional({
    example: 60,
    nullable: true,
    type: Number,
    description: 'Requests per minute; null = the gateway default',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000)
  rpm?: number | null;

  @ApiPropertyOptional({
    example: 100000,
    nullable: true,
    type: Number,
    description: 'Tokens per minute; null = unlimited',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(1_000_000_000)
  tpm?: number | null;
}

export class CreateApiKeyDto {
  @ApiProperty({ example: 'ci-pipeline', minLength: 1, maxLength: 100 })
  @IsString()
  @Length(1, 100)
  name: string;

  @ApiPropertyOptional({
    enum: ROLES,
    example: 'user',
    description:
      "The key's role: at most the owner's role and the caller's own. Default: the highest role within both.",
  })
  @IsOptional()
  @IsIn(ROLES)
  role?: Role;

  @ApiPropertyOptional({
    example: '2030-01-01T00:00:00Z',
    nullable: true,
    type: String,
    description: 'ISO-8601; null = never',
  })
  @IsOptional()
  @IsISO8601({ strict: true })
  expires_at?: string | null;

  @ApiPropertyOptional({ type: () => ApiKeyLimitsInputDto, nullable: true })
  @IsOptional()
  @ValidateNested()
  @Type(() => ApiKeyLimitsInputDto)
  limits?: ApiKeyLimitsInputDto | null;

  @ApiPropertyOptional({
    example: ['gpt-4o-mini', 'meta-llama/*'],
    nullable: true,
    type: [String],
    description: 'Model ids or `*` patterns this key may call; null = all',
  })
  @IsOptional()
  @IsArray()
  @ArrayMaxSize(100)
  @IsString({ each: true })
  @MinLength(1, { each: true })
  @MaxLength(200, { each: true })
  allowed_models?: string[] | null;

  @ApiPropertyOptional({
    enum: PRIORITIES,
    example: 'high',
    description: 'Highest X-Priority the key may use (default high; only admins may grant urgent)',
  })
  @IsOptional()
  @IsIn(PRIORITIES)
  max_priority?: Priority;

  @ApiPropertyOptional({
    format: 'uuid',
    example: '3f6d2a1b-8c4e-4b7a-9e21-5d0c7f1a2b3c',
    nullable: true,
    type: String,
    description:
      "The owner's team (default). A key always belongs to its owner's team, so any other value is a 400: a member's keys count against the team's limits.",
  })
  @IsOptional()
  @IsUUID()
  team_id?: string | null;

  @ApiPropertyOptional({
    type: () => BudgetDto,
    nullable: true,
    description: `${BUDGET_TEXT} A key with a budget may only create keys with a budget of the same period and at most its limit.`,
  })
  @IsOptional()
  @ValidateNested()
  @Type(() => BudgetDto)
  budget?: BudgetDto | null;

  @ApiPropertyOptional({
    example: false,
    default: false,
    description:
      "Store this key's request and response bodies, secrets redacted, each capped at BODY_CAPTURE_MAX_BYTES, kept BODY_CAPTURE_RETENTION_DAYS (docs/requests.md). Only admins may turn it on.",
  })
  @IsOptional()
  @IsBoolean()
  capture_bodies?: boolean;
}

/**
 * PATCH body of a client key: the creation fields minus `role`, each optional, validated by the very
 * decorators of CreateApiKeyDto (so the same 400s name the same fields). A field that is absent is
 * unchanged; `null` clears a nullable field (`expires_at`, `limits` and each of its members,
 * `allowed_models`, `team_id`, `budget`) and, for `max_priority` / `capture_bodies`, restores the
 * creation default (`high` / false). `limits` merges: `{"rpm": 30}` leaves `tpm` as it is.
 */
export class UpdateApiKeyDto extends PartialType(OmitType(CreateApiKeyDto, ['role'] as const), {
  skipNullProperties: false,
}) {}

export const UPDATE_API_KEY_EXAMPLES = {
  limits: { summary: 'Change the limits (tpm kept)', value: { limits: { rpm: 30 } } },
  budget: { summary: 'Set a budget', value: { budget: { limit_usd: 10, period: 'day' } } },
  clear_budget: { summary: 'Remove the budget', value: { budget: null } },
  models: {
    summary: 'Rename and narrow the models',
    value: { name: 'ci-pipeline-2', allowed_models: ['gpt-4o-mini'], max_priority: 'normal' },
  },
  expiry: { summary: 'Expire at a date (null: never)', value: { expires_at: '2031-01-01T00:00:00Z' } },
};

export class ApiKeyLimitsDto {
  @ApiProperty({ example: 60, nullable: true, type: Number })
  rpm: number | null;

  @ApiProperty({ example: 100000, nullable: true, type: Number })
  tpm: number | null;
}

export class ApiKeyDto {
  @ApiProperty({ example: '0b6f4a52-2d55-4c2e-9d43-8f1f2f0c9a11', format: 'uuid' })
  id: string;

  @ApiProperty({ example: 'ci-pipeline' })
  name: string;

  @ApiProperty({ example: 'fg_3Xq9v', description: 'First 8 characters of the key' })
  prefix: string;

  @ApiProperty({ example: 'Q2e0', description: 'Last 4 characters of the key' })
  last4: string;

  @ApiProperty({ example: 'fg_3Xq9v…Q2e0' })
  masked: string;

  @ApiProperty({ example: '7c1e2f0a-5b8d-4e7f-a3c2-1d9e8f7a6b5c', format: 'uuid' })
  owner_id: string;

  @ApiProperty({ enum: ROLES, example: 'user' })
  role: Role;

  @ApiProperty({ type: () => ApiKeyLimitsDto })
  limits: ApiKeyLimitsDto;

  @ApiProperty({ example: ['gpt-4o-mini'], nullable: true, type: [String] })
  allowed_models: string[] | null;

  @ApiProperty({ enum: PRIORITIES, example: 'high' })
  max_priority: Priority;

  @ApiProperty({
    example: null,
    nullable: true,
    type: String,
    format: 'uuid',
    description: "The owner's team (null: the owner is in none)",
  })
  team_id: string | null;

  @ApiProperty({
    type: () => BudgetViewDto,
    nullable: true,
    description: "The key's spend budget (null: none)",
  })
  budget: BudgetViewDto | null;

  @ApiProperty({ example: false, description: 'Bodies of its requests are captured (docs/requests.md)' })
  capture_bodies: boolean;

  @ApiProperty({ example: null, nullable: true, type: String, format: 'uuid' })
  created_by: string | null;

  @ApiProperty({ example: '2030-01-01T00:00:00.000Z', nullable: true, type: String })
  expires_at: string | null;

  @ApiProperty({
    example: '2025-11-22T10:00:05.000Z',
    nullable: true,
    type: String,
    description: 'Accurate to a few seconds',
  })
  last_used_at: string | null;

  @ApiProperty({ example: '2025-11-22T09:12:00.000Z' })
  created_at: string;

  @ApiProperty({ example: null, nullable: true, type: String })
  revoked_at: string | null;
}

export class ApiKeyCreatedDto extends ApiKeyDto {
  @ApiProperty({
    example: KEY_EXAMPLE,
    description: 'The key itself. Shown in this response only: store it now.',
  })
  key: string;
}

export class ApiKeyListDto {
  @ApiProperty({ type: [ApiKeyDto] })
  data: ApiKeyDto[];

  @ApiProperty({ example: false })
  has_more: boolean;
}

const toBoolean = ({ value }: { value: unknown }): unknown =>
  value === 'true' ? true : value === 'false' ? false : value;

export class ListOwnKeysQueryDto {
  @ApiPropertyOptional({ example: false, description: 'Include revoked keys (default false)' })
  @IsOptional()
  @Transform(toBoolean)
  @IsBoolean()
  include_revoked?: boolean;
}

export class ListApiKeysQueryDto extends ListOwnKeysQueryDto {
  @ApiPropertyOptional({ format: 'uuid', description: 'Only keys owned by this user' })
  @IsOptional()
  @IsUUID()
  user_id?: string;

  @ApiPropertyOptional({
    format: 'uuid',
    description: "Only this team's keys (a team_admin always gets its own team's only)",
  })
  @IsOptional()
  @IsUUID()
  team_id?: string;

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

export function toApiKeyDto(key: ApiKey): ApiKeyDto {
  return {
    id: key.id,
    name: key.name,
    prefix: key.prefix,
    last4: key.last4,
    masked: maskApiKey(key.prefix, key.last4),
    owner_id: key.userId,
    role: key.role,
    limits: { rpm: key.rpm, tpm: key.tpm },
    allowed_models: key.allowedModels,
    max_priority: key.maxPriority,
    team_id: key.teamId ?? null,
    budget: budgetView(key.budgetLimitMicros ?? null, key.budgetPeriod ?? null),
    capture_bodies: key.captureBodies ?? false,
    created_by: key.createdBy,
    expires_at: key.expiresAt?.toISOString() ?? null,
    last_used_at: key.lastUsedAt?.toISOString() ?? null,
    created_at: key.createdAt.toISOString(),
    revoked_at: key.revokedAt?.toISOString() ?? null,
  };
}
