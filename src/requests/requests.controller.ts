import { Controller, Get, Param, Query } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiTags,
} from '@nestjs/swagger';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { can, RequirePermission } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import { ListRequestsQueryDto, RequestDetailDto, RequestPageDto } from './dto/requests.dto.js';
import { RequestsService } from './services/requests.service.js';

const ROW = {
  id: '0b6f9a52-3c1e-4d7a-9e2b-5f8c1a2d3e4f',
  request_id: 'req_3f1c2d4e',
  created_at: '2026-12-01T10:00:00.123Z',
  endpoint: 'chat',
  model: 'chat-default',
  served_model: 'gpt-4o-mini',
  status: 200,
  outcome: 'ok',
  error_code: null,
  priority: 'normal',
  stream: false,
  prompt_tokens: 12,
  completion_tokens: 34,
  total_tokens: 46,
  cost_usd: 0.000142,
  queue_ms: 0,
  upstream_ms: 412,
  overhead_ms: 3,
  attempt_count: 1,
  provider_id: '5a1b2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d',
  provider_name: 'openai',
  provider_key_id: '6b2c3d4e-5f6a-4b7c-9d8e-0f1a2b3c4d5e',
  api_key_id: '7c3d4e5f-6a7b-4c8d-8e9f-1a2b3c4d5e6f',
  user_id: '8d4e5f6a-7b8c-4d9e-9f0a-2b3c4d5e6f7a',
  team_id: null,
  route_id: '9e5f6a7b-8c9d-4e0f-8a1b-3c4d5e6f7a8b',
};

const SCOPE =
  "Admins see every request; a team_admin sees its own team's only (the rows charged to its team).";

@ApiTags('admin: requests')
@Controller('api/admin/requests')
export class RequestsController {
  constructor(private readonly requests: RequestsService) {}

  @Get()
  @RequirePermission('teams', 'read', 'team')
  @ApiOperation({
    summary: 'Browse the request log',
    description: `One row per relayed request (written in batches about a second after it ends), newest first, filtered by \`key_id\`, \`user_id\`, \`team_id\`, \`model\`, \`endpoint\` (\`chat\`, \`completions\`, \`embeddings\`, \`responses\`, \`messages\`), \`provider_id\`, \`status\` (a code or \`2xx\`/\`4xx\`/\`5xx\`) and the time range \`from\` (inclusive) … \`to\` (exclusive). Keyset pages on (created_at, id): pass \`next_cursor\` back as \`cursor\` until it is null; rows written while you page never shift or repeat rows. ${SCOPE}`,
  })
  @ApiOkResponse({ type: RequestPageDto, schema: { example: { data: [ROW], next_cursor: null } } })
  @ApiBadRequestResponse({
    description:
      'A bad filter; `error.param` names it (`key_id`, `user_id`, `team_id`, `provider_id`: not a UUID; `endpoint`: not one of chat, completions, embeddings, responses, messages; `status`; `from`/`to`: not ISO 8601 with a zone, or from not before to; `cursor`: not one this API returned; `limit`: not 1-500; an unknown parameter)',
    type: ErrorResponseDto,
  })
  list(
    @Query() query: ListRequestsQueryDto,
    @CurrentPrincipal() principal: Principal,
  ): Promise<RequestPageDto> {
    return this.requests.list({ ...query }, teamScope(principal));
  }

  @Get(':id')
  @RequirePermission('teams', 'read', 'team')
  @ApiOperation({
    summary: 'One request, with its attempts and captured bodies',
    description: `The row, its upstream \`attempts\` (oldest first; a request served in one attempt without a route shows the one attempt its row describes) and, when body capture was on for its key or route, \`request_body\` and \`response_body\` (secrets redacted, each capped at BODY_CAPTURE_MAX_BYTES; docs/requests.md). ${SCOPE} Another team's request is a 404, like a missing one.`,
  })
  @ApiParam({
    name: 'id',
    format: 'uuid',
    description: 'The row id (`id` in the list), not the x-request-id',
  })
  @ApiOkResponse({
    type: RequestDetailDto,
    schema: {
      example: {
        ...ROW,
        attempts: [
          {
            attempt: 1,
            provider_id: ROW.provider_id,
            provider_name: 'openai',
            model: 'gpt-4o-mini',
            provider_key_id: ROW.provider_key_id,
            status: 200,
            outcome: 'ok',
            ms: 412,
          },
        ],
        request_body: null,
        response_body: null,
        body_truncated: false,
      },
    },
  })
  @ApiNotFoundResponse({
    description: 'No such request (or not a UUID; `error.param` is `id`)',
    type: ErrorResponseDto,
  })
  get(@Param('id') id: string, @CurrentPrincipal() principal: Principal): Promise<RequestDetailDto> {
    return this.requests.get(id, teamScope(principal));
  }
}

/** null: every team (an admin); otherwise the caller's own team (its team_admin). */
function teamScope(principal: Principal): string | null {
  return can(principal.role, 'teams', 'read') ? null : principal.team!.id;
}
