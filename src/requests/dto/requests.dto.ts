import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { IsOptional, IsString, MaxLength } from 'class-validator';
import { DEFAULT_LIMIT, MAX_LIMIT } from '../domain/request-query.js';

/** The list's query: strings here (one each), checked by the domain (src/requests/domain/request-query.ts). */
export class ListRequestsQueryDto {
  @ApiPropertyOptional({ format: 'uuid', description: 'Only requests made with this client API key' })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  key_id?: string;

  @ApiPropertyOptional({
    format: 'uuid',
    description: "Only this user's requests (all their keys and sessions)",
  })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  user_id?: string;

  @ApiPropertyOptional({
    format: 'uuid',
    description: "Only requests charged to this team (a team_admin: its own team's only; another is a 403)",
  })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  team_id?: string;

  @ApiPropertyOptional({
    example: 'gpt-4o-mini',
    description: 'The model the client asked for (exact; a route alias too)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(300)
  model?: string;

  @ApiPropertyOptional({
    enum: ['chat', 'completions', 'embeddings', 'responses', 'messages'],
    example: 'embeddings',
    description:
      'The relay endpoint: `chat` (/v1/chat/completions), `completions`, `embeddings`, `responses` or `messages` (/v1/messages)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(32)
  endpoint?: string;

  @ApiPropertyOptional({ format: 'uuid', description: 'The provider that served it (the last attempt’s)' })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  provider_id?: string;

  @ApiPropertyOptional({
    example: '5xx',
    description: 'An exact status (`429`) or a class: `2xx`, `4xx`, `5xx` (also `1xx`, `3xx`)',
  })
  @IsOptional()
  @IsString()
  @MaxLength(8)
  status?: string;

  @ApiPropertyOptional({
    example: '2026-12-01T00:00:00Z',
    description: 'Inclusive: ISO 8601 date (UTC midnight) or date-time with a zone',
  })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  from?: string;

  @ApiPropertyOptional({
    example: '2026-12-02T00:00:00Z',
    description: 'Exclusive: ISO 8601 date or date-time with a zone',
  })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  to?: string;

  @ApiPropertyOptional({ description: 'The `next_cursor` of the previous page (opaque)' })
  @IsOptional()
  @IsString()
  @MaxLength(256)
  cursor?: string;

  @ApiPropertyOptional({ example: 50, default: DEFAULT_LIMIT, description: `Rows per page, 1-${MAX_LIMIT}` })
  @IsOptional()
  @IsString()
  @MaxLength(8)
  limit?: string;
}

export class RequestDto {
  @ApiProperty({ format: 'uuid', example: '0b6f9a52-3c1e-4d7a-9e2b-5f8c1a2d3e4f' }) id: string;
  @ApiProperty({ example: 'req_3f1c2d4e', description: 'The x-request-id the client was answered with' })
  request_id: string;
  @ApiProperty({ example: '2026-12-01T10:00:00.123Z' }) created_at: string;
  @ApiProperty({
    enum: ['chat', 'completions', 'embeddings', 'responses', 'messages'],
    example: 'chat',
    description: 'The relay endpoint the request came in on (`chat` = /v1/chat/completions)',
  })
  endpoint: string;
  @ApiProperty({
    example: 'chat-default',
    nullable: true,
    type: String,
    description: 'The model the client asked for',
  })
  model: string | null;
  @ApiProperty({
    example: 'gpt-4o-mini',
    nullable: true,
    type: String,
    description: 'The model the provider served (a route target’s model)',
  })
  served_model: string | null;
  @ApiProperty({ example: 200, description: 'What the client was answered (499: it went away)' })
  status: number;
  @ApiProperty({
    example: 'ok',
    enum: ['ok', 'canceled', 'client_error', 'error'],
    description: 'From the status',
  })
  outcome: string;
  @ApiProperty({ example: null, nullable: true, type: String, description: 'error.code of the answer' })
  error_code: string | null;
  @ApiProperty({ example: 'normal', enum: ['urgent', 'high', 'normal', 'low'] }) priority: string;
  @ApiProperty({ example: false }) stream: boolean;
  @ApiProperty({ example: 12 }) prompt_tokens: number;
  @ApiProperty({ example: 34 }) completion_tokens: number;
  @ApiProperty({ example: 46 }) total_tokens: number;
  @ApiProperty({
    example: 0.000142,
    nullable: true,
    type: Number,
    description:
      'USD, exact to 6 decimals (integer micro-dollars); null: no provider reached or no price known',
  })
  cost_usd: number | null;
  @ApiProperty({ example: 0 }) queue_ms: number;
  @ApiProperty({ example: 412 }) upstream_ms: number;
  @ApiProperty({ example: 3 }) overhead_ms: number;
  @ApiProperty({ example: 1, description: 'Upstream attempts made' }) attempt_count: number;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) provider_id: string | null;
  @ApiProperty({ example: 'openai', nullable: true, type: String }) provider_name: string | null;
  @ApiProperty({
    format: 'uuid',
    nullable: true,
    type: String,
    description: 'The upstream key (its id, never its value)',
  })
  provider_key_id: string | null;
  @ApiProperty({
    format: 'uuid',
    nullable: true,
    type: String,
    description: 'The client API key; null: a JWT session',
  })
  api_key_id: string | null;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) user_id: string | null;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) team_id: string | null;
  @ApiProperty({
    format: 'uuid',
    nullable: true,
    type: String,
    description: 'The route that served it; null: none',
  })
  route_id: string | null;
}

export class RequestPageDto {
  @ApiProperty({ type: [RequestDto], description: 'Newest first' }) data: RequestDto[];
  @ApiProperty({
    nullable: true,
    type: String,
    example: 'MjAyNi0xMi0wMVQxMDowMDowMC4xMjM0NTZafDBiNmY5YTUyLTNjMWUtNGQ3YS05ZTJiLTVmOGMxYTJkM2U0Zg',
    description: 'Pass as `cursor` for the next (older) page; null: this is the last page',
  })
  next_cursor: string | null;
}

export class AttemptDto {
  @ApiProperty({ example: 1 }) attempt: number;
  @ApiProperty({ format: 'uuid' }) provider_id: string;
  @ApiProperty({ example: 'openai', nullable: true, type: String }) provider_name: string | null;
  @ApiProperty({ example: 'gpt-4o-mini' }) model: string;
  @ApiProperty({ format: 'uuid', nullable: true, type: String }) provider_key_id: string | null;
  @ApiProperty({
    example: 200,
    nullable: true,
    type: Number,
    description: 'Upstream status; null: no answer (timeout, connection)',
  })
  status: number | null;
  @ApiProperty({ example: 'ok' }) outcome: string;
  @ApiProperty({ example: 412 }) ms: number;
}

export class RequestDetailDto extends RequestDto {
  @ApiProperty({
    type: [AttemptDto],
    description:
      'Every upstream attempt, oldest first (one built from the row when no attempt log was kept; none when no provider was reached)',
  })
  attempts: AttemptDto[];
  @ApiProperty({
    nullable: true,
    type: String,
    example: '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"my key is [REDACTED]"}]}',
    description:
      'The request body as received, secrets redacted, capped at BODY_CAPTURE_MAX_BYTES; null: not captured',
  })
  request_body: string | null;
  @ApiProperty({
    nullable: true,
    type: String,
    example: '{"id":"chatcmpl-1","object":"chat.completion","choices":[]}',
    description:
      'The response as relayed (JSON text, or the SSE text), secrets redacted, capped; null: not captured',
  })
  response_body: string | null;
  @ApiProperty({ example: false, description: 'A captured body was cut at BODY_CAPTURE_MAX_BYTES' })
  body_truncated: boolean;
}
