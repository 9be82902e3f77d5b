import { Controller, Delete, Get, HttpCode, Param, Post, Req, Res } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiBody,
  ApiHeader,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiPayloadTooLargeResponse,
  ApiResponse,
  ApiTags,
  ApiTooManyRequestsResponse,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ApiError } from '../common/api-error.js';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import { RateLimitInAdmission } from '../rate-limit/rate-limit.types.js';
import type { Principal } from '../common/principal.js';
import { RelayService } from './relay.service.js';
import { ResponsesStage } from './stages/responses.stage.js';
import { RouteStage, type ModelCard } from './stages/route.stage.js';

const PRIORITY_HEADER = {
  name: 'X-Priority',
  required: false,
  description:
    'urgent | high | normal | low (default normal). Above the key’s max_priority → 403; anything else → 400.',
  schema: { type: 'string', enum: ['urgent', 'high', 'normal', 'low'] },
};

const CHAT_EXAMPLE = {
  model: 'gpt-4o-mini',
  messages: [{ role: 'user', content: 'Say hello' }],
  stream: false,
};

const MESSAGES_EXAMPLE = {
  model: 'claude-sonnet-4-5',
  max_tokens: 1024,
  messages: [{ role: 'user', content: 'Say hello' }],
  stream: false,
};

const MESSAGES_ANSWER_EXAMPLE = {
  id: 'msg_01XFDUDYJgAACzvnptvVoYEL',
  type: 'message',
  role: 'assistant',
  model: 'claude-sonnet-4-5',
  content: [{ type: 'text', text: 'Hello!' }],
  stop_reason: 'end_turn',
  stop_sequence: null,
  usage: { input_tokens: 10, cache_creation_input_tokens: 0, cache_read_input_tokens: 0, output_tokens: 5 },
};

const MESSAGES_ERROR_EXAMPLE = {
  type: 'error',
  error: {
    type: 'invalid_request_error',
    code: 'validation_failed',
    message: 'max_tokens must be a positive integer',
    param: 'max_tokens',
    request_id: '3f0c9a4e-…',
  },
};

const RelayErrors = () => (target: object, key: string | symbol, descriptor: PropertyDescriptor) => {
  ApiBadRequestResponse({
    description: 'Missing/invalid model, messages, input…; bad X-Priority',
    type: ErrorResponseDto,
  })(target, key, descriptor);
  ApiNotFoundResponse({ description: 'Unknown model (model_not_found)', type: ErrorResponseDto })(
    target,
    key,
    descriptor,
  );
  ApiPayloadTooLargeResponse({ description: 'Body over BODY_LIMIT_BYTES', type: ErrorResponseDto })(
    target,
    key,
    descriptor,
  );
  ApiTooManyRequestsResponse({
    description:
      "Client rate limit, upstream capacity exhausted or queue wait timeout (Retry-After); or `budget_exceeded`: the key's, user's or team's spend budget cannot hold this request's worst-case cost (Retry-After = seconds to the period reset; none for a `total` budget)",
    type: ErrorResponseDto,
  })(target, key, descriptor);
  ApiResponse({
    status: 502,
    description:
      'Upstream error after one retry on another key (a route alias: after its max_attempts targets)',
    type: ErrorResponseDto,
  })(target, key, descriptor);
  ApiResponse({
    status: 503,
    description:
      'Queue full (queue_full_error), no usable upstream keys, a route alias without a target on an enabled provider (no_route_target) or with every target’s breaker open (route_targets_unavailable); Retry-After',
    type: ErrorResponseDto,
  })(target, key, descriptor);
  ApiResponse({ status: 504, description: 'Upstream timeout', type: ErrorResponseDto })(
    target,
    key,
    descriptor,
  );
};

const RESPONSES_EXAMPLE = {
  model: 'gpt-4o-mini',
  input: 'Say hello',
  max_output_tokens: 256,
  stream: false,
};

const RESPONSE_EXAMPLE = {
  id: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b',
  object: 'response',
  created_at: 1741476542,
  status: 'completed',
  model: 'gpt-4o-mini',
  output: [
    {
      type: 'message',
      id: 'msg_67ccd2bf17f0819081ff3bb2cf6508e60bb6a6b452d3795b',
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text: 'Hello!', annotations: [] }],
    },
  ],
  usage: {
    input_tokens: 9,
    input_tokens_details: { cached_tokens: 0 },
    output_tokens: 3,
    output_tokens_details: { reasoning_tokens: 0 },
    total_tokens: 12,
  },
};

const RESPONSE_CALL_DOC =
  'Response headers: x-request-id, x-floodgate-overhead-ms, x-floodgate-provider-key. Client rate limits apply as on other routes; not logged in the request log.';

const ResponseCallErrors = () => (target: object, key: string | symbol, descriptor: PropertyDescriptor) => {
  ApiNotFoundResponse({
    description:
      'response_not_found: no response with this id was created through Floodgate by this client key (unknown, expired, deleted, or another tenant’s); or the provider’s own 404',
    type: ErrorResponseDto,
  })(target, key, descriptor);
  ApiTooManyRequestsResponse({
    description:
      'Client rate limit, or the upstream key that holds the response is cooling down / at its limits (Retry-After)',
    type: ErrorResponseDto,
  })(target, key, descriptor);
  ApiResponse({ status: 502, description: 'Upstream error', type: ErrorResponseDto })(
    target,
    key,
    descriptor,
  );
  ApiResponse({
    status: 503,
    description:
      'The provider or upstream key that holds the response is disabled or gone (no_usable_upstream_keys)',
    type: ErrorResponseDto,
  })(target, key, descriptor);
  ApiResponse({ status: 504, description: 'Upstream timeout', type: ErrorResponseDto })(
    target,
    key,
    descriptor,
  );
};

const RELAY_HEADERS_DOC =
  'Response headers: x-request-id, x-floodgate-queue-ms, x-floodgate-overhead-ms (gateway time, upstream excluded), ' +
  'x-floodgate-provider-key (upstream key id), X-RateLimit-*, RateLimit-Policy, RateLimit; for a route alias, ' +
  'x-floodgate-route-target (`provider name/model` of the target that answered, or was tried last).';

/** OpenAI-compatible endpoints: point the official SDK's baseURL at `<floodgate>/v1`. */
@ApiTags('relay (OpenAI-compatible)')
@Controller('v1')
export class RelayController {
  constructor(
    private readonly relay: RelayService,
    private readonly routes: RouteStage,
    private readonly responses: ResponsesStage,
  ) {}

  @Post('chat/completions')
  @HttpCode(200)
  @RequirePermission('relay', 'write')
  @RateLimitInAdmission()
  @ApiOperation({
    summary: 'Chat completion (stream: true → server-sent events)',
    description: `Relayed to the provider that serves \`model\` (or, for a route alias, to its targets by tier and weight, with fallbacks; the answer shows the alias as \`model\`). Unknown fields pass through untouched. On an anthropic-kind provider the request is translated to the Messages API and the answer (JSON or stream) back to a chat completion; a field the translation cannot carry (\`n\` > 1, \`logprobs\`, \`response_format\` json…) → 400 \`unsupported_parameter\` naming it (docs/translation.md). ${RELAY_HEADERS_DOC}`,
  })
  @ApiHeader(PRIORITY_HEADER)
  @ApiBody({ schema: { type: 'object', required: ['model', 'messages'], example: CHAT_EXAMPLE } })
  @ApiOkResponse({ description: 'The provider’s answer (JSON, or text/event-stream when stream is true)' })
  @RelayErrors()
  chat(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.relay.handle('chat', request, reply);
  }

  @Post('completions')
  @HttpCode(200)
  @RequirePermission('relay', 'write')
  @RateLimitInAdmission()
  @ApiOperation({ summary: 'Legacy text completion (stream supported)', description: RELAY_HEADERS_DOC })
  @ApiHeader(PRIORITY_HEADER)
  @ApiBody({
    schema: {
      type: 'object',
      required: ['model', 'prompt'],
      example: { model: 'gpt-3.5-turbo-instruct', prompt: 'Say hello' },
    },
  })
  @ApiOkResponse({ description: 'The provider’s answer' })
  @RelayErrors()
  completions(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.relay.handle('completions', request, reply);
  }

  @Post('embeddings')
  @HttpCode(200)
  @RequirePermission('relay', 'write')
  @RateLimitInAdmission()
  @ApiOperation({ summary: 'Embeddings', description: RELAY_HEADERS_DOC })
  @ApiHeader(PRIORITY_HEADER)
  @ApiBody({
    schema: {
      type: 'object',
      required: ['model', 'input'],
      example: { model: 'text-embedding-3-small', input: 'hello' },
    },
  })
  @ApiOkResponse({ description: 'The provider’s answer' })
  @RelayErrors()
  embeddings(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.relay.handle('embeddings', request, reply);
  }

  @Post('responses')
  @HttpCode(200)
  @RequirePermission('relay', 'write')
  @RateLimitInAdmission()
  @ApiOperation({
    summary: 'Create a response (OpenAI Responses API; stream: true → server-sent events)',
    description: `Relayed like chat completions (auth, limits, priority, admission, routes, usage and cost). The body goes upstream as sent; a stream's events (\`event: response.created\`, \`response.output_text.delta\`…, \`response.completed\`) pass through unchanged. Usage is read from \`usage\` (JSON) or the \`response.completed\` event. The created response's id is remembered with the provider and upstream key that hold it, for GET/DELETE /v1/responses/{id}; \`previous_response_id\` sends the request to that provider (404 response_not_found for an id this client key did not create here). For a route alias, \`model\` (JSON) and \`response.model\` (events) show the alias. ${RELAY_HEADERS_DOC}`,
  })
  @ApiHeader(PRIORITY_HEADER)
  @ApiBody({ schema: { type: 'object', required: ['model'], example: RESPONSES_EXAMPLE } })
  @ApiOkResponse({
    description: 'The provider’s answer (JSON, or text/event-stream when stream is true)',
    schema: { example: RESPONSE_EXAMPLE },
  })
  @RelayErrors()
  createResponse(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.relay.handle('responses', request, reply);
  }

  @Get('responses/:id')
  @RequirePermission('relay', 'read')
  @ApiOperation({
    summary: 'Retrieve a stored response',
    description: `Sent to the provider, with the upstream key, that created the response through Floodgate; the provider's status and body relayed (query parameters such as include[] passed on). Only the client key that created it may read it: any other id is 404 response_not_found. ${RESPONSE_CALL_DOC}`,
  })
  @ApiParam({ name: 'id', example: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b' })
  @ApiOkResponse({ description: 'The provider’s response object', schema: { example: RESPONSE_EXAMPLE } })
  @ResponseCallErrors()
  retrieveResponse(
    @Param('id') id: string,
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.responses.forward('GET', id, '', request, reply);
  }

  @Get('responses/:id/input_items')
  @RequirePermission('relay', 'read')
  @ApiOperation({
    summary: 'List a stored response’s input items',
    description: `As GET /v1/responses/{id} (same owner check, same provider and key); pagination parameters (after, limit, order) passed on. ${RESPONSE_CALL_DOC}`,
  })
  @ApiParam({ name: 'id', example: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b' })
  @ApiOkResponse({
    description: 'The provider’s list',
    schema: {
      example: {
        object: 'list',
        data: [
          {
            id: 'msg_abc',
            type: 'message',
            role: 'user',
            content: [{ type: 'input_text', text: 'Say hello' }],
          },
        ],
        first_id: 'msg_abc',
        last_id: 'msg_abc',
        has_more: false,
      },
    },
  })
  @ResponseCallErrors()
  responseInputItems(
    @Param('id') id: string,
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.responses.forward('GET', id, '/input_items', request, reply);
  }

  @Delete('responses/:id')
  @RequirePermission('relay', 'write')
  @ApiOperation({
    summary: 'Delete a stored response',
    description: `Sent to the provider, with the upstream key, that created the response; the provider's status and body relayed, and Floodgate forgets the response. Only the client key that created it may delete it: any other id is 404 response_not_found. ${RESPONSE_CALL_DOC}`,
  })
  @ApiParam({ name: 'id', example: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b' })
  @ApiOkResponse({
    description: 'The provider’s answer',
    schema: {
      example: {
        id: 'resp_67ccd2bed1ec8190b14f964abc0542670bb6a6b452d3795b',
        object: 'response',
        deleted: true,
      },
    },
  })
  @ResponseCallErrors()
  deleteResponse(
    @Param('id') id: string,
    @Req() request: FastifyRequest,
    @Res() reply: FastifyReply,
  ): Promise<void> {
    return this.responses.forward('DELETE', id, '', request, reply);
  }

  @Post('messages')
  @HttpCode(200)
  @RequirePermission('relay', 'write')
  @RateLimitInAdmission()
  @ApiTags('relay (Anthropic-compatible)')
  @ApiOperation({
    summary: 'Anthropic Messages API (stream: true → server-sent events with event: lines)',
    description: `Point an Anthropic SDK's baseURL at \`<floodgate>\` (the SDK appends /v1/messages) and give it a Floodgate key: it sends it as \`x-api-key\` (\`Authorization: Bearer\` works too). Relayed natively to an anthropic-kind provider that serves \`model\` (the body as sent, to \`<base_url>/messages\` with the provider's key as \`x-api-key\`, the client's \`anthropic-version\` (default 2023-06-01) and \`anthropic-beta\`); the answer comes back unchanged (a route alias shows as \`model\`). On an openai-kind provider the request is translated to chat/completions and the answer (JSON or stream) back to a Messages answer; what it cannot carry (server tools, documents…) → 400 \`unsupported_parameter\` naming it (docs/translation.md). Usage is read from \`usage.input_tokens\`, \`output_tokens\`, \`cache_read_input_tokens\`, \`cache_creation_input_tokens\` (streams: message_start and message_delta). Errors carry Anthropic's top-level \`"type": "error"\` besides the one error shape: \`{"type":"error","error":{"type","code","message","param","request_id"}}\`; an upstream 4xx keeps Anthropic's message, its error type as \`code\`. ${RELAY_HEADERS_DOC}`,
  })
  @ApiHeader(PRIORITY_HEADER)
  @ApiHeader({
    name: 'x-api-key',
    required: false,
    description: 'A Floodgate API key (fg_…), as Anthropic SDKs send it; or Authorization: Bearer',
  })
  @ApiHeader({
    name: 'anthropic-version',
    required: false,
    description: 'Forwarded to the provider (default 2023-06-01)',
    schema: { type: 'string', example: '2023-06-01' },
  })
  @ApiHeader({ name: 'anthropic-beta', required: false, description: 'Forwarded to the provider' })
  @ApiBody({
    schema: {
      type: 'object',
      required: ['model', 'max_tokens', 'messages'],
      example: MESSAGES_EXAMPLE,
    },
  })
  @ApiOkResponse({
    description: 'The provider’s answer as it came (JSON, or text/event-stream when stream is true)',
    schema: { example: MESSAGES_ANSWER_EXAMPLE },
  })
  @ApiBadRequestResponse({
    description:
      'Missing/invalid model, messages, max_tokens; bad X-Priority; `unsupported_parameter`: a field the translation to an openai-kind provider cannot carry. Body: `{"type":"error","error":{…}}`',
    schema: { example: MESSAGES_ERROR_EXAMPLE },
  })
  @RelayErrors()
  messages(@Req() request: FastifyRequest, @Res() reply: FastifyReply): Promise<void> {
    return this.relay.handle('messages', request, reply);
  }

  @Get('models')
  @RequirePermission('relay', 'read')
  @ApiOperation({
    summary: 'Models this credential may use',
    description:
      'Route aliases (owned_by "floodgate") and the exact model ids of enabled providers, filtered by the key’s allowed_models (which applies to the alias, not to the targets’ models). Pattern entries (`meta/*`) route requests but are not listed.',
  })
  @ApiOkResponse({
    schema: {
      example: {
        object: 'list',
        data: [{ id: 'gpt-4o-mini', object: 'model', created: 1763769600, owned_by: 'openai' }],
      },
    },
  })
  models(@CurrentPrincipal() principal: Principal): Promise<{ object: 'list'; data: ModelCard[] }> {
    return this.routes.listModels(principal);
  }

  @Get('models/*')
  @RequirePermission('relay', 'read')
  @ApiOperation({
    summary: 'One model (ids may contain /, e.g. meta/llama-3.1-8b-instruct)',
    description: 'A route alias (owned_by "floodgate") or a model id of an enabled provider.',
  })
  @ApiOkResponse({
    schema: {
      example: { id: 'meta/llama-3.1-8b-instruct', object: 'model', created: 1763769600, owned_by: 'nim' },
    },
  })
  @ApiNotFoundResponse({ description: 'Unknown model (model_not_found)', type: ErrorResponseDto })
  model(@CurrentPrincipal() principal: Principal, @Req() request: FastifyRequest): Promise<ModelCard> {
    const path = request.url.split('?')[0]!;
    const raw = path.slice(path.indexOf('/v1/models/') + '/v1/models/'.length);
    let id: string;
    try {
      id = decodeURIComponent(raw);
    } catch {
      throw ApiError.badRequest('model id is not valid URL encoding', 'model');
    }
    return this.routes.getModel(principal, id);
  }
}
