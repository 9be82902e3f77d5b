import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsInt,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
} from 'class-validator';
import { OptionalNotNull } from '../../common/validation.js';
import { ALL_EVENTS, EVENT_TYPES, SECRET_MAX, SECRET_MIN } from '../domain/events.js';

const EVENT_NAMES = [...EVENT_TYPES, ALL_EVENTS];

export class CreateWebhookDto {
  @ApiProperty({
    example: 'https://hooks.example.com/floodgate',
    description:
      'http(s) URL the events are POSTed to (a query string is kept). Its addresses are checked now and again on every connection, like provider base URLs: link-local / cloud metadata always refused; private and loopback unless ALLOW_PRIVATE_UPSTREAMS.',
  })
  @IsString()
  @MinLength(1)
  @MaxLength(2048)
  url: string;

  @ApiProperty({
    example: ['key.cooling', 'key.broken', 'breaker.opened', 'budget.threshold'],
    description: `Events to send: ${EVENT_NAMES.join(', ')} (\`*\` = every event, also ones added later)`,
    enum: EVENT_NAMES,
    isArray: true,
  })
  @IsArray()
  @ArrayMaxSize(20)
  @IsString({ each: true })
  events: string[];

  @ApiPropertyOptional({
    example: 'my-receiver-shared-secret-0123456789',
    description: `HMAC-SHA256 signing secret (${SECRET_MIN}-${SECRET_MAX} printable characters). Write-only: never returned. Omit it and a \`whsec_…\` secret is generated and returned once, in this response only.`,
    minLength: SECRET_MIN,
    maxLength: SECRET_MAX,
  })
  @OptionalNotNull()
  @IsString()
  @MinLength(SECRET_MIN)
  @MaxLength(SECRET_MAX)
  @Matches(/^[\x21-\x7e]+$/, { message: 'secret must be printable ASCII without spaces' })
  secret?: string;

  @ApiPropertyOptional({
    example: true,
    default: true,
    description: 'Disabled webhooks get no new deliveries',
  })
  @OptionalNotNull()
  @IsBoolean()
  enabled?: boolean;
}

export class WebhookDto {
  @ApiProperty({ example: '5b0c1a8e-3f7d-4c1e-9a0b-1f2e3d4c5b6a', format: 'uuid' })
  id: string;

  @ApiProperty({ example: 'https://hooks.example.com/floodgate' })
  url: string;

  @ApiProperty({ example: ['key.cooling', 'breaker.opened'], enum: EVENT_NAMES, isArray: true })
  events: string[];

  @ApiProperty({ example: true })
  enabled: boolean;

  @ApiProperty({
    example: 'whsec_…x9Qk',
    description:
      'The last characters of the signing secret (the secret itself is never returned after creation)',
  })
  secret_hint: string;

  @ApiProperty({ example: '2026-01-05T10:00:00.000Z' })
  created_at: string;

  @ApiProperty({ example: '2026-01-05T10:00:00.000Z' })
  updated_at: string;
}

export class CreatedWebhookDto extends WebhookDto {
  @ApiPropertyOptional({
    example: 'whsec_3q2-7wEjRkQ0l0D3yqS2mN2m5h2Xo3o4lZ8pV9Qk9x0',
    description:
      'Present only when the secret was generated (no `secret` in the request): shown once, store it now',
  })
  secret?: string;
}

export class DeliveryAttemptDto {
  @ApiProperty({ example: 1, description: '1 for the first attempt' })
  attempt: number;

  @ApiProperty({ example: '2026-01-05T10:00:01.120Z', description: 'When the attempt ended' })
  at: string;

  @ApiProperty({ example: 500, nullable: true, type: Number, description: 'null: no answer' })
  http_status: number | null;

  @ApiProperty({ example: 'HTTP 500: internal error', nullable: true, type: String })
  error: string | null;

  @ApiProperty({ example: 42 })
  duration_ms: number;
}

export class WebhookDeliveryDto {
  @ApiProperty({ format: 'uuid', description: 'Also sent as x-floodgate-delivery' })
  id: string;

  @ApiProperty({ format: 'uuid', description: 'The event id (`id` of the body): the same for every webhook' })
  event_id: string;

  @ApiProperty({ example: 'key.cooling' })
  event_type: string;

  @ApiProperty({
    enum: ['pending', 'delivered', 'failed'],
    example: 'delivered',
    description: 'pending: waiting for its next attempt; failed: WEBHOOK_MAX_ATTEMPTS used up',
  })
  status: string;

  @ApiProperty({ example: 3 })
  attempt_count: number;

  @ApiProperty({ type: [DeliveryAttemptDto], description: 'Every attempt, oldest first' })
  attempts: DeliveryAttemptDto[];

  @ApiProperty({ example: null, nullable: true, type: String, description: 'When pending: the next attempt' })
  next_attempt_at: string | null;

  @ApiProperty({ example: 200, nullable: true, type: Number })
  last_http_status: number | null;

  @ApiProperty({ example: null, nullable: true, type: String })
  last_error: string | null;

  @ApiProperty({ example: '2026-01-05T10:00:00.000Z' })
  created_at: string;

  @ApiProperty({ example: '2026-01-05T10:00:06.210Z', nullable: true, type: String })
  completed_at: string | null;
}

export class WebhookDeliveryListDto {
  @ApiProperty({ type: [WebhookDeliveryDto], description: 'Newest first' })
  data: WebhookDeliveryDto[];

  @ApiProperty({
    example: 'MTc2NzYwODAwMDAwMDAwMC41YjBjMWE4ZQ',
    nullable: true,
    type: String,
    description: 'Pass as `cursor` for the next (older) page; null on the last page',
  })
  next_cursor: string | null;
}

export class DeliveryQueryDto {
  @ApiPropertyOptional({ example: 50, minimum: 1, maximum: 200, default: 50 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(200)
  limit?: number;

  @ApiPropertyOptional({ description: 'next_cursor of the previous page' })
  @IsOptional()
  @IsString()
  @MaxLength(200)
  cursor?: string;
}
