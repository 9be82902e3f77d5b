import { Controller, Get, Res, ServiceUnavailableException } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiServiceUnavailableResponse, ApiTags } from '@nestjs/swagger';
import {
  HealthCheck,
  HealthCheckService,
  type HealthCheckResult,
  type HealthIndicatorFunction,
} from '@nestjs/terminus';
import type { FastifyReply } from 'fastify';
import { Public } from '../common/public.decorator.js';
import { DependencyHealth } from './dependency-health.js';

const EXAMPLE_UP = {
  status: 'ok',
  info: {
    database: { status: 'up', kind: 'postgres', latency_ms: 0.42 },
    redis: { status: 'up', latency_ms: 0.18 },
  },
  error: {},
  details: {
    database: { status: 'up', kind: 'postgres', latency_ms: 0.42 },
    redis: { status: 'up', latency_ms: 0.18 },
  },
};
const EXAMPLE_DOWN = {
  status: 'error',
  info: { database: { status: 'up', kind: 'postgres', latency_ms: 0.4 } },
  error: { redis: { status: 'down', latency_ms: 1000.3, message: 'no answer within 1000 ms' } },
  details: {
    database: { status: 'up', kind: 'postgres', latency_ms: 0.4 },
    redis: { status: 'down', latency_ms: 1000.3, message: 'no answer within 1000 ms' },
  },
};

@ApiTags('health')
@Public()
@Controller('health')
export class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly deps: DependencyHealth,
  ) {}

  /** Terminus answers failures by throwing; probes want its body with a 503, not the API error shape. */
  private async run(reply: FastifyReply, checks: HealthIndicatorFunction[]): Promise<HealthCheckResult> {
    try {
      return await this.health.check(checks);
    } catch (err) {
      if (err instanceof ServiceUnavailableException) {
        void reply.status(503);
        return err.getResponse() as HealthCheckResult;
      }
      throw err;
    }
  }

  @Get()
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({ summary: 'Liveness (alias of /health/live)' })
  @ApiOkResponse({
    description: 'The process is up',
    schema: { example: { status: 'ok', info: { process: { status: 'up' } } } },
  })
  root(@Res({ passthrough: true }) reply: FastifyReply): Promise<HealthCheckResult> {
    return this.live(reply);
  }

  @Get('live')
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({
    summary: 'Liveness probe',
    description:
      'The process answers. Checks no dependency, so a Redis or Postgres outage never restarts pods.',
  })
  @ApiOkResponse({
    description: 'The process is up',
    schema: {
      example: { status: 'ok', info: { process: { status: 'up', uptime_seconds: 42, rss_bytes: 91234304 } } },
    },
  })
  live(@Res({ passthrough: true }) reply: FastifyReply): Promise<HealthCheckResult> {
    return this.run(reply, [() => this.deps.process()]);
  }

  @Get('ready')
  @HealthCheck({ swaggerDocumentation: false })
  @ApiOperation({
    summary: 'Readiness probe',
    description:
      'Pings Postgres (and Redis in distributed mode), each with a 1 s deadline and its latency in the details. ' +
      '503 when Redis or the embedded database is down or frozen, and while the instance is shutting down. ' +
      'An unreachable external Postgres is reported as `database: {status: "degraded", reachable: false}` with ' +
      'overall status "degraded" and HTTP 200: the relay keeps serving recently verified callers, and every replica ' +
      'shares that Postgres, so failing readiness would only take all of them out of the load balancer.',
  })
  @ApiOkResponse({
    description: 'Ready to serve (status "degraded": serving without Postgres)',
    schema: { example: EXAMPLE_UP },
  })
  @ApiServiceUnavailableResponse({
    description: 'A dependency is down, or the instance is draining',
    schema: { example: EXAMPLE_DOWN },
  })
  ready(@Res({ passthrough: true }) reply: FastifyReply): Promise<HealthCheckResult> {
    const checks: HealthIndicatorFunction[] = [() => this.deps.accepting(), () => this.deps.postgres()];
    if (this.deps.hasRedis) checks.push(() => this.deps.redis());
    return this.run(reply, checks);
  }
}
