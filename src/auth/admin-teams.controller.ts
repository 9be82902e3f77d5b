import { Body, Controller, Delete, Get, HttpCode, Param, Patch, Post, Query, Req, Res } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiConflictResponse,
  ApiCreatedResponse,
  ApiForbiddenResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../common/api-error.js';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { can, RequirePermission } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import {
  AddTeamMemberDto,
  CreateTeamDto,
  ListTeamsQueryDto,
  TEAM_ID_EXAMPLE,
  TeamDto,
  TeamListDto,
  TeamMemberDto,
  TeamWithMembersDto,
  toTeamDto,
  toTeamMemberDto,
  UpdateTeamDto,
  type TeamBudgetDto,
} from './dto/team.dto.js';
import { TeamsService, type TeamPatch } from './teams.service.js';

const TEAM_ID = { name: 'id', format: 'uuid', example: TEAM_ID_EXAMPLE };
const USER_ID = { name: 'user_id', format: 'uuid', example: '7c1e2f0a-5b8d-4e7f-a3c2-1d9e8f7a6b5c' };
const OWN_TEAM_ONLY = {
  description: "Not an admin, nor this team's team_admin (a team_admin may act on its own team only)",
  type: ErrorResponseDto,
};

const budgetInput = (b: TeamBudgetDto | null | undefined) =>
  b === undefined ? undefined : b === null ? null : { limitUsd: b.limit_usd, period: b.period };

@ApiTags('admin: teams')
@Controller('api/admin/teams')
export class AdminTeamsController {
  constructor(private readonly teams: TeamsService) {}

  @Get()
  @RequirePermission('teams', 'read')
  @ApiOperation({
    summary: 'List teams',
    description: 'Oldest first, with each team’s member count. Admins only.',
  })
  @ApiOkResponse({ type: TeamListDto })
  @ApiBadRequestResponse({ description: 'Invalid query', type: ErrorResponseDto })
  async list(@Query() query: ListTeamsQueryDto): Promise<TeamListDto> {
    const { teams, hasMore } = await this.teams.list({
      limit: query.limit ?? 100,
      offset: query.offset ?? 0,
    });
    const counts = await this.teams.memberCounts(teams.map((t) => t.id));
    return { data: teams.map((t) => toTeamDto(t, counts.get(t.id) ?? 0)), has_more: hasMore };
  }

  @Post()
  @RequirePermission('teams', 'write')
  @ApiOperation({
    summary: 'Create a team',
    description:
      "A team groups users (each in at most one team) and their API keys. Its `limits` (rpm → policy `team`, tpm → `team_tpm`) are shared by all its members' keys and decided in the same atomic step as the key's and the user's: the tightest applies. `allowed_models` and `max_priority` narrow every member key's own. `weight` (1..1000) is the team's fair share of a contended provider queue at one priority; `budget` is enforced like a key's or a user's (docs/spend.md, Budgets): the tightest applies. Audited as team.create.",
  })
  @ApiCreatedResponse({ type: TeamDto })
  @ApiBadRequestResponse({
    description: 'Invalid body (unknown fields included): the message and `param` name the field',
    type: ErrorResponseDto,
  })
  @ApiConflictResponse({
    description: 'A team with this name exists (team_name_taken)',
    type: ErrorResponseDto,
  })
  async create(@Body() body: CreateTeamDto, @Req() request: FastifyRequest): Promise<TeamDto> {
    const team = await this.teams.create(
      {
        name: body.name,
        weight: body.weight,
        limits: body.limits ?? null,
        budget: budgetInput(body.budget) ?? null,
        allowedModels: body.allowed_models ?? null,
        maxPriority: body.max_priority,
      },
      request,
    );
    return toTeamDto(team, 0);
  }

  @Get(':id')
  @RequirePermission('teams', 'read', 'team')
  @ApiOperation({
    summary: 'Get a team with its members',
    description: 'Admins: any team; a team_admin: its own team only (403 for another).',
  })
  @ApiParam(TEAM_ID)
  @ApiOkResponse({ type: TeamWithMembersDto })
  @ApiForbiddenResponse(OWN_TEAM_ONLY)
  @ApiNotFoundResponse({ description: 'No such team', type: ErrorResponseDto })
  async get(@Param('id') id: string, @CurrentPrincipal() principal: Principal): Promise<TeamWithMembersDto> {
    this.teams.assertTeamScope(principal, id, 'teams', 'read');
    const team = await this.teams.get(id);
    const members = await this.teams.members(team.id);
    return { ...toTeamDto(team, members.length), members: members.map(toTeamMemberDto) };
  }

  @Patch(':id')
  @RequirePermission('teams', 'write')
  @ApiOperation({
    summary: 'Update a team',
    description:
      'Send at least one field; `limits`, `budget` and `allowed_models` accept null (none). Takes effect for every member key on every instance at once (cached credentials are invalidated). Audited as team.update with from/to per field. Admins only.',
  })
  @ApiParam(TEAM_ID)
  @ApiOkResponse({ type: TeamDto })
  @ApiBadRequestResponse({ description: 'Invalid body, or no field sent', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such team', type: ErrorResponseDto })
  @ApiConflictResponse({
    description: 'A team with this name exists (team_name_taken)',
    type: ErrorResponseDto,
  })
  async update(
    @Param('id') id: string,
    @Body() body: UpdateTeamDto,
    @Req() request: FastifyRequest,
  ): Promise<TeamDto> {
    const patch: TeamPatch = {
      name: body.name,
      weight: body.weight,
      limits: body.limits,
      budget: budgetInput(body.budget),
      allowedModels: body.allowed_models,
      maxPriority: body.max_priority,
    };
    if (Object.values(patch).every((v) => v === undefined)) {
      throw ApiError.badRequest(
        'Send at least one of name, weight, limits, budget, allowed_models, max_priority',
      );
    }
    const team = await this.teams.update(id, patch, request);
    const counts = await this.teams.memberCounts([team.id]);
    return toTeamDto(team, counts.get(team.id) ?? 0);
  }

  @Delete(':id')
  @HttpCode(204)
  @RequirePermission('teams', 'write')
  @ApiOperation({
    summary: 'Delete a team',
    description:
      'Detaches, never deletes: its members leave the team and their API keys lose their team_id (the team’s limits stop applying to them at once, on every instance). The audit row (team.delete) lists the detached members and the number of detached keys. Admins only.',
  })
  @ApiParam(TEAM_ID)
  @ApiNoContentResponse({ description: 'Deleted; members and keys detached' })
  @ApiNotFoundResponse({ description: 'No such team', type: ErrorResponseDto })
  async delete(@Param('id') id: string, @Req() request: FastifyRequest): Promise<void> {
    await this.teams.delete(id, request);
  }

  @Post(':id/members/:user_id')
  @RequirePermission('teams', 'write', 'team')
  @ApiOperation({
    summary: 'Add a member, or change their team role',
    description:
      "Body `{role}`: `member` (default) or `team_admin`. A user belongs to at most one team: a member of another team is a 409 (remove them there first). The user's API keys join the team (their team_id is set). A team_admin may add only users whose role is within its own (never an admin: 403). 201 when the user joined, 200 when they were already a member (role updated or unchanged). Admins: any team; a team_admin: its own team only. Audited as team.member_add / team.member_update.",
  })
  @ApiParam(TEAM_ID)
  @ApiParam(USER_ID)
  @ApiCreatedResponse({ type: TeamMemberDto, description: 'The user joined the team' })
  @ApiOkResponse({ type: TeamMemberDto, description: 'Already a member: role updated (or unchanged)' })
  @ApiBadRequestResponse({ description: 'Invalid body (e.g. an unknown role)', type: ErrorResponseDto })
  @ApiForbiddenResponse(OWN_TEAM_ONLY)
  @ApiNotFoundResponse({ description: 'No such team or user', type: ErrorResponseDto })
  @ApiConflictResponse({
    description: 'The user is in another team (user_in_another_team)',
    type: ErrorResponseDto,
  })
  async addMember(
    @Param('id') id: string,
    @Param('user_id') userId: string,
    @Body() body: AddTeamMemberDto,
    @CurrentPrincipal() principal: Principal,
    @Req() request: FastifyRequest,
    @Res({ passthrough: true }) reply: FastifyReply,
  ): Promise<TeamMemberDto> {
    this.teams.assertTeamScope(principal, id, 'teams', 'write');
    const teamAdminRole = can(principal.role, 'teams', 'write') ? null : principal.role;
    const { user, created } = await this.teams.addMember(id, userId, body.role, request, teamAdminRole);
    void reply.status(created ? 201 : 200);
    return toTeamMemberDto(user);
  }

  @Delete(':id/members/:user_id')
  @HttpCode(204)
  @RequirePermission('teams', 'write', 'team')
  @ApiOperation({
    summary: 'Remove a member',
    description:
      "Their API keys leave the team with them (team_id cleared; the keys keep working under the key's and user's limits). Admins: any team; a team_admin: its own team only. Audited as team.member_remove.",
  })
  @ApiParam(TEAM_ID)
  @ApiParam(USER_ID)
  @ApiNoContentResponse({ description: 'Removed' })
  @ApiForbiddenResponse(OWN_TEAM_ONLY)
  @ApiNotFoundResponse({ description: 'No such team, or the user is not its member', type: ErrorResponseDto })
  async removeMember(
    @Param('id') id: string,
    @Param('user_id') userId: string,
    @CurrentPrincipal() principal: Principal,
    @Req() request: FastifyRequest,
  ): Promise<void> {
    this.teams.assertTeamScope(principal, id, 'teams', 'write');
    await this.teams.removeMember(id, userId, request);
  }
}
