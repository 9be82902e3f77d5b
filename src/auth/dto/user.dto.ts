import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Transform, Type } from 'class-transformer';
import {
  IsBoolean,
  IsEmail,
  IsIn,
  IsInt,
  IsOptional,
  IsString,
  Length,
  Max,
  MaxLength,
  Min,
  ValidateNested,
} from 'class-validator';
import { ROLES, type Role } from '../../common/principal.js';
import { OptionalNotNull } from '../../common/validation.js';
import type { User } from '../user.entity.js';
import { BUDGET_TEXT, BudgetDto, BudgetViewDto, budgetView } from './budget.dto.js';

const trim = ({ value }: { value: unknown }): unknown => (typeof value === 'string' ? value.trim() : value);

export class CreateUserDto {
  @ApiProperty({ example: 'ada@example.com', maxLength: 320, description: 'Unique, case-insensitive' })
  @Transform(trim)
  @IsEmail()
  @MaxLength(320)
  email: string;

  @ApiPropertyOptional({ example: 'Ada Lovelace', nullable: true, type: String, maxLength: 200 })
  @IsOptional()
  @IsString()
  @Length(1, 200)
  name?: string | null;

  @ApiProperty({ enum: ROLES, example: 'developer' })
  @IsIn(ROLES)
  role: Role;

  @ApiPropertyOptional({ example: false })
  @IsOptional()
  @IsBoolean()
  disabled?: boolean;

  @ApiPropertyOptional({
    example: 'auth0|64b7f0c2e1',
    nullable: true,
    type: String,
    description: "Links this user to the identity provider's `sub` (JWT sign-in)",
  })
  @IsOptional()
  @IsString()
  @Length(1, 255)
  jwt_subject?: string | null;

  @ApiPropertyOptional({ type: () => BudgetDto, nullable: true, description: BUDGET_TEXT })
  @IsOptional()
  @ValidateNested()
  @Type(() => BudgetDto)
  budget?: BudgetDto | null;
}

export class UpdateUserDto {
  @ApiPropertyOptional({ example: 'ada@example.com', maxLength: 320 })
  @OptionalNotNull()
  @Transform(trim)
  @IsEmail()
  @MaxLength(320)
  email?: string;

  @ApiPropertyOptional({ example: 'Ada Lovelace', nullable: true, type: String })
  @IsOptional()
  @IsString()
  @Length(1, 200)
  name?: string | null;

  @ApiPropertyOptional({
    enum: ROLES,
    example: 'user',
    description: "Lowering a role also caps the user's keys to it",
  })
  @OptionalNotNull()
  @IsIn(ROLES)
  role?: Role;

  @ApiPropertyOptional({ example: true, description: 'A disabled user can use none of their keys or tokens' })
  @OptionalNotNull()
  @IsBoolean()
  disabled?: boolean;

  @ApiPropertyOptional({ example: 'auth0|64b7f0c2e1', nullable: true, type: String })
  @IsOptional()
  @IsString()
  @Length(1, 255)
  jwt_subject?: string | null;

  @ApiPropertyOptional({ type: () => BudgetDto, nullable: true, description: BUDGET_TEXT })
  @IsOptional()
  @ValidateNested()
  @Type(() => BudgetDto)
  budget?: BudgetDto | null;
}

export class ListUsersQueryDto {
  @ApiPropertyOptional({ enum: ROLES })
  @IsOptional()
  @IsIn(ROLES)
  role?: Role;

  @ApiPropertyOptional({ example: 'ada@example.com', description: 'Exact match, case-insensitive' })
  @IsOptional()
  @IsString()
  @MaxLength(320)
  email?: string;

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

export class UserDto {
  @ApiProperty({ example: '7c1e2f0a-5b8d-4e7f-a3c2-1d9e8f7a6b5c', format: 'uuid' })
  id: string;

  @ApiProperty({ example: 'ada@example.com', nullable: true, type: String })
  email: string | null;

  @ApiProperty({ example: 'Ada Lovelace', nullable: true, type: String })
  name: string | null;

  @ApiProperty({ enum: ROLES, example: 'developer' })
  role: Role;

  @ApiProperty({ example: false })
  disabled: boolean;

  @ApiProperty({ example: null, nullable: true, type: String })
  jwt_subject: string | null;

  @ApiProperty({
    example: null,
    nullable: true,
    type: String,
    format: 'uuid',
    description: 'The one team the user belongs to (set through /api/admin/teams/{id}/members)',
  })
  team_id: string | null;

  @ApiProperty({ example: null, nullable: true, enum: ['member', 'team_admin'] })
  team_role: 'member' | 'team_admin' | null;

  @ApiProperty({
    type: () => BudgetViewDto,
    nullable: true,
    description: "The user's spend budget, shared by all their keys and sessions (null: none)",
  })
  budget: BudgetViewDto | null;

  @ApiProperty({ example: '2025-11-22T09:00:00.000Z' })
  created_at: string;

  @ApiProperty({ example: '2025-11-22T09:00:00.000Z' })
  updated_at: string;

  @ApiProperty({
    example: '2025-11-22T10:00:05.000Z',
    nullable: true,
    type: String,
    description: 'Accurate to a few seconds',
  })
  last_seen_at: string | null;
}

export class UserListDto {
  @ApiProperty({ type: [UserDto] })
  data: UserDto[];

  @ApiProperty({ example: false })
  has_more: boolean;
}

export function toUserDto(user: User): UserDto {
  return {
    id: user.id,
    email: user.email,
    name: user.name,
    role: user.role,
    disabled: user.disabled,
    jwt_subject: user.jwtSubject,
    team_id: user.teamId ?? null,
    team_role: user.teamRole ?? null,
    budget: budgetView(user.budgetLimitMicros ?? null, user.budgetPeriod ?? null),
    created_at: user.createdAt.toISOString(),
    updated_at: user.updatedAt.toISOString(),
    last_seen_at: user.lastSeenAt?.toISOString() ?? null,
  };
}
