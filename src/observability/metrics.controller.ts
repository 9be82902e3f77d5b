import { Controller, Get, Headers, Inject, Res } from '@nestjs/common';
import { PrometheusController } from '@willsoto/nestjs-prometheus';
import {
  ApiHeader,
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiTags,
  ApiUnauthorizedResponse,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { ApiError } from '../common/api-error.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { Public } from '../common/public.decorator.js';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import { MetricsTokenCheck } from './metrics-token.js';

const EXAMPLE = `# HELP floodgate_http_requests_total HTTP requests answered, by route template and status class
# TYPE floodgate_http_requests_total counter
floodgate_http_requests_total{method="GET",route="/health/live",status_class="2xx"} 12
floodgate_http_requests_total{method="GET",route="unmatched",status_class="4xx"} 1
`;

/**
 * The @willsoto/nestjs-prometheus controller (registered by PrometheusModule at /metrics), serving
 * Floodgate's per-application registry instead of prom-client's global one, behind METRICS_TOKEN.
 */
@ApiTags('observability')
@Public()
@Controller()
export class MetricsController extends PrometheusController {
  private readonly token: MetricsTokenCheck;

  constructor(
    private readonly metrics: FloodgateMetrics,
    @Inject(APP_CONFIG) config: AppConfig,
  ) {
    super();
    this.token = new MetricsTokenCheck(config.metricsToken);
  }

  @Get()
  @ApiOperation({
    summary: 'Prometheus metrics',
    description:
      'Prometheus text exposition: default process metrics and every `floodgate_*` family (see docs/observability.md). ' +
      'Gauges mirroring shared state (queue depth, upstream key states, learned limits, retreat) are read at scrape time. ' +
      'When METRICS_TOKEN is set, requires `Authorization: Bearer <METRICS_TOKEN>`.',
  })
  @ApiProduces('text/plain')
  @ApiHeader({
    name: 'authorization',
    required: false,
    description: '`Bearer <METRICS_TOKEN>` when METRICS_TOKEN is set',
  })
  @ApiOkResponse({
    description: 'Prometheus text format 0.0.4',
    content: { 'text/plain': { example: EXAMPLE } },
  })
  @ApiUnauthorizedResponse({
    description: 'METRICS_TOKEN is set and the bearer token is missing or wrong',
    type: ErrorResponseDto,
  })
  override async index(
    @Res({ passthrough: true }) reply: FastifyReply,
    @Headers('authorization') authorization?: string,
  ): Promise<string> {
    if (!this.token.allows(authorization)) {
      throw ApiError.unauthorized(
        authorization
          ? 'The metrics token is not valid'
          : 'GET /metrics needs Authorization: Bearer <METRICS_TOKEN>',
        authorization ? 'invalid_metrics_token' : 'missing_metrics_token',
      );
    }
    const body = await this.metrics.render();
    void reply.header('content-type', this.metrics.contentType).header('cache-control', 'no-store');
    return body;
  }
}
