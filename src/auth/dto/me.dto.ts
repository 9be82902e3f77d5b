import { ApiProperty } from '@nestjs/swagger';
import { PRIORITIES, ROLES, type Priority, type Role } from '../../common/principal.js';
import type { PermissionSummary } from '../roles.js';
import { ApiKeyLimitsDto } from './api-key.dto.js';

export class MeApiKeyDto {
  @ApiProperty({ example: '0b6f4a52-2d55-4c2e-9d43-8f1f2f0c9a11', format: 'uuid' })
  id: string;

  @ApiProperty({ example: 'ci-pipeline' })
  name: string;

  @ApiProperty({ example: 'fg_3Xq9v…Q2e0' })
  masked: string;

  @ApiProperty({ enum: ROLES, example: 'user' })
  role: Role;

  @ApiProperty({ type: () => ApiKeyLimitsDto })
  limits: ApiKeyLimitsDto;

  @ApiProperty({ example: null, nullable: true, type: [String] })
  allowed_models: string[] | null;

  @ApiProperty({ enum: PRIORITIES, example: 'high' })
  max_priority: Priority;

  @ApiProperty({ example: null, nullable: true, type: String })
  expires_at: string | null;
}

export class MeTeamDto {
  @ApiProperty({ example: '3f2b9c1d-6e4a-4b8f-9d2c-7a1e5f3b8c60', format: 'uuid' })
  id: string;

  @ApiProperty({ enum: ['member', 'team_admin'], example: 'team_admin' })
  role: 'member' | 'team_admin';
}

export class MeDto {
  @ApiProperty({ example: '7c1e2f0a-5b8d-4e7f-a3c2-1d9e8f7a6b5c', format: 'uuid' })
  id: string;

  @ApiProperty({ example: 'ada@example.com', nullable: true, type: String })
  email: string | null;

  @ApiProperty({ example: 'Ada Lovelace', nullable: true, type: String })
  name: string | null;

  @ApiProperty({
    enum: ROLES,
    example: 'user',
    description: 'Effective role of this request (the API key role when a key is used)',
  })
  role: Role;

  @ApiProperty({ enum: ROLES, example: 'developer', description: "The user's own role" })
  user_role: Role;

  @ApiProperty({ enum: ['jwt', 'api_key'], example: 'api_key' })
  method: 'jwt' | 'api_key';

  @ApiProperty({ type: () => MeApiKeyDto, nullable: true })
  api_key: MeApiKeyDto | null;

  @ApiProperty({
    description: "What the effective role may do: resource → {read, write}, each 'any', 'own' or null",
    example: {
      api_keys: { read: 'own', write: 'own' },
      relay: { read: 'any', write: 'any' },
      users: { read: null, write: null },
    },
    type: 'object',
    additionalProperties: true,
  })
  permissions: PermissionSummary;

  @ApiProperty({
    type: () => MeTeamDto,
    nullable: true,
    description: "The caller's team and membership role, as this request carries it (null: no team)",
  })
  team: MeTeamDto | null;

  @ApiProperty({
    type: [String],
    example: ['3f2b9c1d-6e4a-4b8f-9d2c-7a1e5f3b8c60'],
    description: 'The teams the caller is team_admin of (at most one today; empty: none)',
  })
  team_admin_of: string[];

  @ApiProperty({
    description:
      "A team_admin's extra grants, on its own team only ('team' scope), in the shape of `permissions`; null when not a team_admin",
    example: {
      api_keys: { read: 'team', write: 'team' },
      teams: { read: 'team', write: 'team' },
      users: { read: null, write: null },
    },
    nullable: true,
    type: 'object',
    additionalProperties: true,
  })
  team_permissions: PermissionSummary | null;
}
