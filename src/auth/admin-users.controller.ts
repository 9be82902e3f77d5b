import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { ApiError } from '../common/api-error.js';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { can, RequirePermission } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import { ApiKeysService } from './api-keys.service.js';
import { ApiKeyCreatedDto, CreateApiKeyDto, toApiKeyDto } from './dto/api-key.dto.js';
import {
  CreateUserDto,
  ListUsersQueryDto,
  toUserDto,
  UpdateUserDto,
  UserDto,
  UserListDto,
} from './dto/user.dto.js';
import { keyInputFrom } from './key-input.js';
import { budgetInput } from './dto/budget.dto.js';
import { UsersService, type UserPatch } from './users.service.js';

@ApiTags('admin: users')
@Controller('api/admin/users')
export class AdminUsersController {
  constructor(
    private readonly users: UsersService,
    private readonly keys: ApiKeysService,
  ) {}

  @Get()
  @RequirePermission('users', 'read')
  @ApiOperation({
    summary: 'List users',
    description: 'Oldest first; filter by role or email (exact, case-insensitive).',
  })
  @ApiOkResponse({ type: UserListDto })
  @ApiBadRequestResponse({ description: 'Invalid query', type: ErrorResponseDto })
  async list(@Query() query: ListUsersQueryDto): Promise<UserListDto> {
    const { users, hasMore } = await this.users.list({
      role: query.role,
      email: query.email,
      limit: query.limit ?? 100,
      offset: query.offset ?? 0,
    });
    return { data: users.map(toUserDto), has_more: hasMore };
  }

  @Post()
  @RequirePermission('users', 'write')
  @ApiOperation({
    summary: 'Create a user',
    description:
      "Users sign in with JWTs (link with jwt_subject) or API keys created for them. `budget`: the user's spend budget, shared by all their keys and sessions (docs/spend.md, Budgets).",
  })
  @ApiCreatedResponse({ type: UserDto })
  @ApiBadRequestResponse({ description: 'Invalid body (unknown fields included)', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'Email or jwt_subject already used', type: ErrorResponseDto })
  async create(@Body() body: CreateUserDto, @Req() request: FastifyRequest): Promise<UserDto> {
    const user = await this.users.create(
      {
        email: body.email,
        name: body.name,
        role: body.role,
        disabled: body.disabled,
        jwtSubject: body.jwt_subject,
        budget: budgetInput(body.budget),
      },
      request,
    );
    return toUserDto(user);
  }

  @Get(':id')
  @RequirePermission('users', 'read')
  @ApiOperation({ summary: 'Get a user' })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiOkResponse({ type: UserDto })
  @ApiNotFoundResponse({ description: 'No such user', type: ErrorResponseDto })
  async get(@Param('id') id: string): Promise<UserDto> {
    return toUserDto(await this.users.get(id));
  }

  @Patch(':id')
  @RequirePermission('users', 'write')
  @ApiOperation({
    summary: 'Update a user',
    description:
      "Disabling a user stops all their keys and tokens at once (every instance). Lowering a role caps the user's keys to it. The last enabled admin cannot be demoted or disabled. `budget` (null clears it) is the user's spend budget, shared by all their keys and sessions (docs/spend.md, Budgets); it applies at once on every instance.",
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiOkResponse({ type: UserDto })
  @ApiBadRequestResponse({ description: 'Invalid body (unknown fields included)', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such user', type: ErrorResponseDto })
  @ApiConflictResponse({
    description: 'Email or jwt_subject already used, or the last admin would be lost',
    type: ErrorResponseDto,
  })
  async update(
    @Param('id') id: string,
    @Body() body: UpdateUserDto,
    @Req() request: FastifyRequest,
  ): Promise<UserDto> {
    const patch: UserPatch = {
      email: body.email,
      name: body.name,
      role: body.role,
      disabled: body.disabled,
      jwtSubject: body.jwt_subject,
      budget: budgetInput(body.budget),
    };
    if (Object.values(patch).every((v) => v === undefined)) {
      throw ApiError.badRequest('Send at least one of email, name, role, disabled, jwt_subject, budget');
    }
    const { user } = await this.users.update(id, patch, request);
    return toUserDto(user);
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('users', 'write')
  @ApiOperation({
    summary: 'Delete a user',
    description: 'Their API keys are deleted with them. The last enabled admin cannot be deleted.',
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiNoContentResponse({ description: 'Deleted' })
  @ApiNotFoundResponse({ description: 'No such user', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'The last enabled admin', type: ErrorResponseDto })
  async delete(@Param('id') id: string, @Req() request: FastifyRequest): Promise<void> {
    await this.users.delete(id, request);
  }

  @Post(':id/keys')
  @RequirePermission('api_keys', 'write', 'team')
  @ApiOperation({
    summary: 'Create an API key for a user',
    description:
      "The raw `key` is in this response only. Its role is at most the user's role. The key carries the user's team (`team_id`, default; any other value is a 400). Admins: any user; a team_admin: members of its own team only (403 otherwise).",
  })
  @ApiParam({ name: 'id', format: 'uuid' })
  @ApiCreatedResponse({ type: ApiKeyCreatedDto })
  @ApiBadRequestResponse({
    description: "Invalid body (unknown fields included), or a role above the user's",
    type: ErrorResponseDto,
  })
  @ApiNotFoundResponse({ description: 'No such user', type: ErrorResponseDto })
  @ApiConflictResponse({ description: 'The user is disabled', type: ErrorResponseDto })
  async createKey(
    @Param('id') id: string,
    @Body() body: CreateApiKeyDto,
    @CurrentPrincipal() principal: Principal,
    @Req() request: FastifyRequest,
  ): Promise<ApiKeyCreatedDto> {
    const teamAdminOnly = !can(principal.role, 'api_keys', 'write');
    const owner = teamAdminOnly ? await this.users.findById(id) : await this.users.get(id);
    // A team_admin learns nothing about users outside its team: missing and foreign are both 403.
    if (teamAdminOnly && (!owner || owner.teamId === null || owner.teamId !== principal.team?.id)) {
      throw ApiError.forbidden(
        "A team_admin may create keys for its own team's members only",
        'insufficient_permission',
      );
    }
    if (!owner) throw ApiError.notFound('User not found', 'user_not_found', 'id');
    const { key, raw } = await this.keys.create(owner, keyInputFrom(body), principal, request);
    return { ...toApiKeyDto(key), key: raw };
  }
}
