import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import {
  ArrayMaxSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  Matches,
  Max,
  MaxLength,
  Min,
  MinLength,
} from 'class-validator';
import { OptionalNotNull } from '../../common/validation.js';
import { PROVIDER_KINDS, type ProviderKind } from '../domain/provider-kind.js';

// Shared with every DTO (src/common/validation.ts); re-exported for the key pool's other DTOs.
export { OptionalNotNull };

export const PROVIDER_NAME_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const MODEL_PATTERN = /^\S+$/;

const PRICING_EXAMPLE = {
  'gpt-4o-mini': { input_per_mtok: 0.15, output_per_mtok: 0.6, cached_input_per_mtok: 0.075 },
  'text-embedding-*': { input_per_mtok: 0.02, output_per_mtok: 0, cached_input_per_mtok: 0.02 },
};
const KIND_DESCRIPTION =
  'What API the provider speaks: `openai` (OpenAI-compatible: `Authorization: Bearer`, `/chat/completions`, `/completions`, `/embeddings` under base_url; the default) or `anthropic` (the Anthropic Messages API: `x-api-key` + `anthropic-version`, `/messages` under base_url, e.g. `https://api.anthropic.com/v1`). Decides which client endpoints its models serve (docs/relay.md "Anthropic providers and the Messages API").';
const KIND_MESSAGE = `kind must be one of ${PROVIDER_KINDS.join(', ')}`;

const HEADERS_WRITE_DESCRIPTION =
  'Extra headers sent upstream (at most 20; no credentials, hop-by-hop or framing headers; values up to 4096 characters without line breaks). A value containing `…` is a redacted preview read back from a GET, not a value: 400 `redacted_header_value`.';

const PRICING_DESCRIPTION =
  'USD per million tokens, per model id or `*` pattern (an exact id wins, then the most specific pattern); numbers 0-1000000 with at most 6 decimals; `cached_input_per_mtok` defaults to `input_per_mtok`. A model without an entry here is priced from the built-in catalog (docs/spend.md), if it is there. Replaces the whole table on PATCH; `{}` clears it.';

/** A model's price (USD per million tokens). */
export class ModelPriceDto {
  @ApiProperty({
    example: 0.15,
    minimum: 0,
    maximum: 1_000_000,
    description: 'Prompt tokens not served from cache',
  })
  input_per_mtok: number;

  @ApiProperty({ example: 0.6, minimum: 0, maximum: 1_000_000, description: 'Completion tokens' })
  output_per_mtok: number;

  @ApiPropertyOptional({
    example: 0.075,
    minimum: 0,
    maximum: 1_000_000,
    description: 'Prompt tokens the upstream served from its cache; default: input_per_mtok',
  })
  cached_input_per_mtok: number;
}

export class CreateProviderDto {
  @ApiProperty({
    example: 'openai',
    description: 'Unique (case-insensitive); letters, digits, . _ -; 1-64 characters',
  })
  @IsString()
  @Matches(PROVIDER_NAME_PATTERN, {
    message: 'name must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit',
  })
  name: string;

  @ApiPropertyOptional({
    enum: PROVIDER_KINDS,
    example: 'openai',
    default: 'openai',
    description: KIND_DESCRIPTION,
  })
  @OptionalNotNull()
  @IsIn(PROVIDER_KINDS, { message: KIND_MESSAGE })
  kind?: ProviderKind;

  @ApiProperty({
    example: 'https://api.openai.com/v1',
    description:
      'http(s) base URL (the API paths are appended: `https://api.openai.com/v1` for OpenAI, `https://api.anthropic.com/v1` for an anthropic provider). Its addresses are checked at save and connect time: link-local / cloud metadata always refused; private and loopback unless ALLOW_PRIVATE_UPSTREAMS.',
  })
  @IsString()
  @MinLength(1)
  @MaxLength(2048)
  base_url: string;

  @ApiPropertyOptional({
    example: ['gpt-4o-mini', 'gpt-4o', 'text-embedding-*'],
    description: 'Exact model ids and `*` patterns',
    default: [],
  })
  @OptionalNotNull()
  @IsArray()
  @ArrayMaxSize(1000)
  @IsString({ each: true })
  @MinLength(1, { each: true })
  @MaxLength(256, { each: true })
  @Matches(MODEL_PATTERN, {
    each: true,
    message: 'each models entry must be a model id or * pattern without whitespace',
  })
  models?: string[];

  @ApiPropertyOptional({
    example: 500,
    nullable: true,
    type: Number,
    description: 'Provider-wide requests per minute; null = none',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  rpm?: number | null;

  @ApiPropertyOptional({
    example: 50,
    nullable: true,
    type: Number,
    description: 'Burst above rpm the provider bucket allows; null = none',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  burst?: number | null;

  @ApiPropertyOptional({ example: 60000, default: 60000, description: 'Upstream timeout, 1000-600000 ms' })
  @OptionalNotNull()
  @IsInt()
  @Min(1000)
  @Max(600_000)
  timeout_ms?: number;

  @ApiPropertyOptional({ example: true, default: true })
  @OptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({
    example: { 'OpenAI-Organization': 'org-123' },
    description: HEADERS_WRITE_DESCRIPTION,
    type: 'object',
    additionalProperties: { type: 'string' },
  })
  @OptionalNotNull()
  @IsObject()
  headers?: Record<string, string>;

  @ApiPropertyOptional({
    example: PRICING_EXAMPLE,
    description: PRICING_DESCRIPTION,
    type: 'object',
    additionalProperties: { $ref: '#/components/schemas/ModelPriceDto' },
  })
  @OptionalNotNull()
  @IsObject()
  pricing?: Record<string, ModelPriceDto>;
}

export class UpdateProviderDto {
  @ApiPropertyOptional({ example: 'openai-eu' })
  @OptionalNotNull()
  @IsString()
  @Matches(PROVIDER_NAME_PATTERN, {
    message: 'name must be 1-64 of A-Z a-z 0-9 . _ - starting with a letter or digit',
  })
  name?: string;

  @ApiPropertyOptional({ enum: PROVIDER_KINDS, example: 'anthropic', description: KIND_DESCRIPTION })
  @OptionalNotNull()
  @IsIn(PROVIDER_KINDS, { message: KIND_MESSAGE })
  kind?: ProviderKind;

  @ApiPropertyOptional({ example: 'https://eu.api.openai.com/v1' })
  @OptionalNotNull()
  @IsString()
  @MinLength(1)
  @MaxLength(2048)
  base_url?: string;

  @ApiPropertyOptional({ example: ['gpt-4o-mini'] })
  @OptionalNotNull()
  @IsArray()
  @ArrayMaxSize(1000)
  @IsString({ each: true })
  @MinLength(1, { each: true })
  @MaxLength(256, { each: true })
  @Matches(MODEL_PATTERN, {
    each: true,
    message: 'each models entry must be a model id or * pattern without whitespace',
  })
  models?: string[];

  @ApiPropertyOptional({ example: 500, nullable: true, type: Number })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  rpm?: number | null;

  @ApiPropertyOptional({ example: 50, nullable: true, type: Number })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  burst?: number | null;

  @ApiPropertyOptional({ example: 30000 })
  @OptionalNotNull()
  @IsInt()
  @Min(1000)
  @Max(600_000)
  timeout_ms?: number;

  @ApiPropertyOptional({ example: false })
  @OptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({
    example: { 'OpenAI-Organization': 'org-456' },
    description: `${HEADERS_WRITE_DESCRIPTION} Replaces the whole map; \`{}\` clears it; leave it out to keep the current headers.`,
    type: 'object',
    additionalProperties: { type: 'string' },
  })
  @OptionalNotNull()
  @IsObject()
  headers?: Record<string, string>;

  @ApiPropertyOptional({
    example: PRICING_EXAMPLE,
    description: PRICING_DESCRIPTION,
    type: 'object',
    additionalProperties: { $ref: '#/components/schemas/ModelPriceDto' },
  })
  @OptionalNotNull()
  @IsObject()
  pricing?: Record<string, ModelPriceDto>;
}

export class ProviderKeyCountsDto {
  @ApiProperty({ example: 3 }) total: number;
  @ApiProperty({ example: 2 }) active: number;
  @ApiProperty({ example: 1 }) cooling: number;
  @ApiProperty({ example: 0 }) disabled: number;
  @ApiProperty({ example: 0 }) broken: number;
  @ApiProperty({ example: 0 }) invalid: number;
}

export class ProviderDto {
  @ApiProperty({ example: '0b6f7a52-1d7e-4a8f-9a51-2b8f1c0e6d42' }) id: string;
  @ApiProperty({ example: 'openai' }) name: string;
  @ApiProperty({ enum: PROVIDER_KINDS, example: 'openai', description: KIND_DESCRIPTION }) kind: ProviderKind;
  @ApiProperty({ example: 'https://api.openai.com/v1' }) base_url: string;
  @ApiProperty({ example: ['gpt-4o-mini', 'text-embedding-*'], type: [String] }) models: string[];
  @ApiProperty({ example: 500, nullable: true, type: Number }) rpm: number | null;
  @ApiProperty({ example: 50, nullable: true, type: Number }) burst: number | null;
  @ApiProperty({ example: 60000 }) timeout_ms: number;
  @ApiProperty({ example: true }) enabled: boolean;
  @ApiProperty({
    example: { 'OpenAI-Organization': 'org-123' },
    description:
      'Extra upstream headers. Values in clear for callers who may edit providers (`providers` write: admins); for any other role each value is a preview like the `masked` of an upstream key (`…` for values under 8 characters, `…xy` under 16, else up to the first dash and the last 4: `pc-…9f3a`) and `headers_redacted` is true. A preview is never accepted back as a value.',
    type: 'object',
    additionalProperties: { type: 'string' },
  })
  headers: Record<string, string>;
  @ApiProperty({
    example: false,
    description: 'true: the values in `headers` are redacted previews (the caller may not edit providers)',
  })
  headers_redacted: boolean;
  @ApiProperty({
    example: PRICING_EXAMPLE,
    description:
      'USD per million tokens per model id or pattern; models missing here use the built-in catalog',
    type: 'object',
    additionalProperties: { $ref: '#/components/schemas/ModelPriceDto' },
  })
  pricing: Record<string, ModelPriceDto>;
  @ApiProperty({ enum: ['api', 'file'], example: 'api', description: '`file`: managed by PROVIDERS_FILE' })
  source: string;
  @ApiProperty({ type: ProviderKeyCountsDto }) keys: ProviderKeyCountsDto;
  @ApiProperty({ example: '2025-11-22T10:00:00.000Z' }) created_at: string;
  @ApiProperty({ example: '2025-11-22T10:00:00.000Z' }) updated_at: string;
}
