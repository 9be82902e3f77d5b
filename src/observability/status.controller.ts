import { Controller, Get, Query, Req, Res } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiExtraModels,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import { BreakerStatusDto, STATUS_EXAMPLE, StatusQueryDto } from './status.dto.js';
import { StatusService, type StatusSnapshot } from './status.service.js';
import { SSE_RETRY_MS, StatusStream } from './status-stream.js';

@ApiTags('status')
@ApiExtraModels(BreakerStatusDto)
@Controller('api/admin/status')
export class StatusController {
  constructor(
    private readonly status: StatusService,
    private readonly stream: StatusStream,
  ) {}

  @Get()
  @RequirePermission('status', 'read')
  @ApiOperation({
    summary: 'What the gateway is doing right now',
    description:
      'Mode, version, uptime, live instances, request totals and throughput (this instance), queue depth per ' +
      "provider and priority, each provider's token bucket and retreat state, its upstream keys (state, cooldown, " +
      'learned or fixed concurrency limit, in-flight, RPM used), recent adaptive adjustments and the circuit breaker ' +
      'of every route target (`breakers`: BreakerStatusDto). Queue, keys, retreat and breakers are shared state: every instance answers the same. `sources` says which facts are reported by their ' +
      'owning module; a fact that is not is null, never a made-up zero. Same numbers as GET /metrics.',
  })
  @ApiOkResponse({ description: 'The status', schema: { example: STATUS_EXAMPLE } })
  @ApiBadRequestResponse({ description: 'history_seconds out of range', type: ErrorResponseDto })
  async get(@Query() query: StatusQueryDto): Promise<StatusSnapshot> {
    const snapshot = await this.status.snapshot();
    if (!query.history_seconds) return snapshot;
    return { ...snapshot, history: this.status.history(query.history_seconds) };
  }

  @Get('stream')
  @RequirePermission('status', 'read')
  @ApiOperation({
    summary: 'The status as server-sent events',
    description:
      `\`text/event-stream\`: first \`retry: ${SSE_RETRY_MS}\`, then about once a second \`event: status\` with an ` +
      '`id` and the same JSON as GET /api/admin/status in `data`; a `: keep-alive` comment every 15 s; ' +
      '`event: shutdown` before the stream ends when the instance stops (reconnect: another instance answers). ' +
      'Browsers: EventSource cannot send an Authorization header, so read it with fetch() and a stream reader (the dashboard does).',
  })
  @ApiProduces('text/event-stream')
  @ApiOkResponse({
    description: 'An endless event stream',
    content: {
      'text/event-stream': {
        example: `retry: ${SSE_RETRY_MS}\n\nid: 1\nevent: status\ndata: {"generated_at":"2025-11-22T10:15:30.000Z","mode":"embedded",…}\n\n: keep-alive\n\n`,
      },
    },
  })
  streamStatus(@Req() request: FastifyRequest, @Res() reply: FastifyReply): void {
    this.stream.open(request, reply);
  }
}
