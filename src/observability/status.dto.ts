import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsOptional, Max, Min } from 'class-validator';
import { HISTORY_SECONDS } from './status.service.js';

export class StatusQueryDto {
  @ApiPropertyOptional({
    example: 300,
    minimum: 0,
    maximum: HISTORY_SECONDS,
    description: 'Also return `history`: per-second request counts of the last N seconds (this instance)',
  })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(0)
  @Max(HISTORY_SECONDS)
  history_seconds?: number;
}

/** One route target's circuit breaker in GET /api/admin/status (`breakers`; docs/breaker.md). */
export class BreakerStatusDto {
  @ApiProperty({ example: 'chat-default', description: 'The route: the model name clients send' })
  route!: string;

  @ApiProperty({
    example: '1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
    description: "The route's id (PATCH /api/admin/routes/{id} forces a target's breaker)",
  })
  route_id!: string;

  @ApiProperty({ example: '9b2e4f1a-6c3d-4e8f-a1b2-c3d4e5f6a7b8', description: "The target's provider id" })
  provider_id!: string;

  @ApiProperty({
    example: 'openai',
    description: "The provider's name (its id when the provider no longer exists)",
  })
  provider!: string;

  @ApiProperty({ example: 'gpt-4o-mini', description: 'The model the upstream receives' })
  model!: string;

  @ApiProperty({
    enum: ['closed', 'open', 'half_open'],
    example: 'open',
    description:
      "The breaker's own state, shared by every instance: closed (sends), open (sends nothing until open_until), " +
      'half_open (open time over: one probe request may go, or is out; its success closes the breaker, its failure opens it again)',
  })
  state!: string;

  @ApiProperty({
    enum: ['auto', 'open', 'closed'],
    example: 'auto',
    description:
      "The admin's override on the route target (PATCH): `open` sends nothing, `closed` sends whatever the state; `auto` follows the state",
  })
  forced!: string;

  @ApiProperty({
    example: 5,
    description: 'Failures in a row (5xx, timeout, connection error; 429s are not counted)',
  })
  consecutive_failures!: number;

  @ApiProperty({ example: 6, description: 'Failures in the current window (BREAKER_WINDOW_MS)' })
  window_failures!: number;

  @ApiProperty({
    example: 11,
    description:
      'Requests in the current window (successes are added about once a second, so this may lag by a second)',
  })
  window_requests!: number;

  @ApiProperty({
    type: String,
    nullable: true,
    example: '2025-11-22T10:15:58.000Z',
    description: 'When an open breaker lets its probe through (ISO-8601); null while closed',
  })
  open_until!: string | null;
}

/** The documented example of GET /api/admin/status (also in docs/observability.md). */
export const STATUS_EXAMPLE = {
  generated_at: '2025-11-22T10:15:30.000Z',
  mode: 'distributed',
  version: '0.1.0',
  instance_id: '3f0c2a9e-8d1b-4c7a-9e5f-2b6d8a1c4e7f',
  uptime_seconds: 5400,
  instances: [
    {
      id: '3f0c2a9e-8d1b-4c7a-9e5f-2b6d8a1c4e7f',
      hostname: 'floodgate-7d9f8-abcde',
      pid: 1,
      version: '0.1.0',
      mode: 'distributed',
      started_at: '2025-11-22T08:45:30.000Z',
      last_seen_at: '2025-11-22T10:15:20.000Z',
      self: true,
    },
  ],
  requests: {
    scope: 'instance',
    http_total: 18240,
    http_by_status_class: { '1xx': 0, '2xx': 17980, '3xx': 0, '4xx': 250, '5xx': 10 },
    relayed_total: 17200,
    relayed_by_outcome: {
      ok: 16950,
      client_error: 40,
      rate_limited: 180,
      queue_full: 0,
      no_usable_keys: 0,
      dependency_unavailable: 0,
      unavailable: 0,
      upstream_error: 25,
      upstream_timeout: 5,
      canceled: 0,
      error: 0,
    },
    relayed_by_priority: { urgent: 200, high: 1000, normal: 15000, low: 1000 },
    rate_limited_total: 180,
    upstream_429_total: 64,
    tokens: { prompt: 5120000, completion: 1630000 },
  },
  errors: {
    http_5xx: 10,
    upstream_errors: 25,
    upstream_timeouts: 5,
    queue_full_rejects: 0,
    rate_limit_store_errors: 0,
  },
  throughput: {
    window_seconds: 60,
    http_per_second: 3.4,
    relayed_per_second: 3.2,
    upstream_429_per_second: 0.02,
    rate_limited_per_second: 0.05,
  },
  sample: {
    t: '2025-11-22T10:15:30.000Z',
    http: 4,
    relayed: 3,
    upstream_429: 0,
    rate_limited: 0,
    http_5xx: 0,
  },
  queue: { urgent: 0, high: 1, normal: 6, low: 12, total: 19 },
  providers: [
    {
      id: '9b2e4f1a-6c3d-4e8f-a1b2-c3d4e5f6a7b8',
      name: 'openai',
      enabled: true,
      queue: { urgent: 0, high: 1, normal: 6, low: 12, total: 19 },
      token_bucket: { capacity: 60, tokens: 12.5, refill_per_second: 5 },
      retreat: {
        state: 'retreat',
        effective_rpm: 300,
        base_rpm: 600,
        upstream_429_rate: 0.12,
        since: '2025-11-22T10:14:02.000Z',
      },
      keys: [
        {
          id: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f',
          label: 'primary',
          state: 'active',
          cooldown_until: null,
          cooldown_remaining_seconds: 0,
          concurrency_mode: 'adaptive',
          concurrency_limit: 4,
          in_flight: 3,
          rpm_used: 212,
          max_rpm: 500,
        },
        {
          id: '6d7e8f9a-0b1c-4d2e-9f3a-4b5c6d7e8f9a',
          label: 'backup',
          state: 'cooling',
          cooldown_until: '2025-11-22T10:15:48.000Z',
          cooldown_remaining_seconds: 18,
          concurrency_mode: 'fixed',
          concurrency_limit: 8,
          in_flight: 0,
          rpm_used: 40,
          max_rpm: null,
        },
      ],
      key_states: { active: 1, cooling: 1, disabled: 0, broken: 0, invalid: 0 },
    },
  ],
  adaptive: {
    recent_adjustments: [
      {
        at: '2025-11-22T10:14:01.000Z',
        provider_id: '9b2e4f1a-6c3d-4e8f-a1b2-c3d4e5f6a7b8',
        key_id: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f',
        key_label: 'primary',
        old_limit: 5,
        new_limit: 4,
        reason: 'concurrency_429',
        in_flight: 5,
      },
    ],
  },
  breakers: [
    {
      route: 'chat-default',
      route_id: '1d2c3b4a-5e6f-4a7b-8c9d-0e1f2a3b4c5d',
      provider_id: '9b2e4f1a-6c3d-4e8f-a1b2-c3d4e5f6a7b8',
      provider: 'openai',
      model: 'gpt-4o-mini',
      state: 'open',
      forced: 'auto',
      consecutive_failures: 5,
      window_failures: 6,
      window_requests: 11,
      open_until: '2025-11-22T10:15:58.000Z',
    },
  ],
  sources: {
    providers: 'wired',
    keys: 'wired',
    live_key_counters: 'wired',
    token_bucket: 'wired',
    retreat: 'wired',
    adaptive_adjustments: 'wired',
    breakers: 'wired',
  },
  problems: [],
};
