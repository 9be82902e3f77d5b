import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
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
import { OptionalNotNull } from './provider.dto.js';

/** Printable ASCII without spaces: what every provider's keys look like, and no header injection. */
export const KEY_VALUE_PATTERN = /^[\x21-\x7e]+$/;
const KEY_VALUE_MESSAGE = 'key must be printable ASCII without spaces (1-4096 characters)';

export class CreateProviderKeyDto {
  @ApiProperty({
    example: 'team-a primary',
    description: 'Unique per provider (case-insensitive), 1-128 characters',
  })
  @IsString()
  @MinLength(1)
  @MaxLength(128)
  label: string;

  @ApiProperty({
    example: 'sk-proj-…',
    description: 'The upstream API key. Write-only: stored encrypted, answered only as `masked`.',
    writeOnly: true,
  })
  @IsString()
  @MaxLength(4096)
  @Matches(KEY_VALUE_PATTERN, { message: KEY_VALUE_MESSAGE })
  key: string;

  @ApiPropertyOptional({ example: 1, default: 1, description: 'Lower is tried first (0-1000)' })
  @OptionalNotNull()
  @IsInt()
  @Min(0)
  @Max(1000)
  priority?: number;

  @ApiPropertyOptional({
    example: 60,
    nullable: true,
    type: Number,
    description: 'Requests per sliding 60 s; null = unlimited',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  max_rpm?: number | null;

  @ApiPropertyOptional({
    example: 100000,
    nullable: true,
    type: Number,
    description: 'Tokens per sliding 60 s; null = unlimited',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(2_000_000_000)
  max_tpm?: number | null;

  @ApiPropertyOptional({
    example: null,
    nullable: true,
    type: Number,
    description: 'Concurrent requests; null = adaptive (learned), a number = fixed',
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000)
  max_concurrent?: number | null;

  @ApiPropertyOptional({ example: true, default: true })
  @OptionalNotNull()
  @IsBoolean()
  enabled?: boolean;
}

export class UpdateProviderKeyDto {
  @ApiPropertyOptional({ example: 'team-a backup' })
  @OptionalNotNull()
  @IsString()
  @MinLength(1)
  @MaxLength(128)
  label?: string;

  @ApiPropertyOptional({
    example: 'sk-proj-…',
    description: 'Replaces the value (clears broken and invalid)',
    writeOnly: true,
  })
  @OptionalNotNull()
  @IsString()
  @MaxLength(4096)
  @Matches(KEY_VALUE_PATTERN, { message: KEY_VALUE_MESSAGE })
  key?: string;

  @ApiPropertyOptional({ example: 2 })
  @OptionalNotNull()
  @IsInt()
  @Min(0)
  @Max(1000)
  priority?: number;

  @ApiPropertyOptional({ example: 120, nullable: true, type: Number })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000_000)
  max_rpm?: number | null;

  @ApiPropertyOptional({ example: 200000, nullable: true, type: Number })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(2_000_000_000)
  max_tpm?: number | null;

  @ApiPropertyOptional({ example: 8, nullable: true, type: Number })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(10_000)
  max_concurrent?: number | null;

  @ApiPropertyOptional({
    example: true,
    description: 'true also ends a cooldown and clears `invalid` (the admin vouches for the key)',
  })
  @OptionalNotNull()
  @IsBoolean()
  enabled?: boolean;
}

export class KeyWindowDto {
  @ApiProperty({
    example: 12,
    description: 'Requests admitted in the last 60 s (tracked for keys with max_rpm)',
  })
  requests: number;
  @ApiProperty({ example: 5400, description: 'Tokens charged in the last 60 s' }) tokens: number;
  @ApiProperty({ example: 2 }) in_flight: number;
}

export class ProviderKeyDto {
  @ApiProperty({ example: '5d0f3c7e-7b1a-4f3e-9a51-2b8f1c0e6d42' }) id: string;
  @ApiProperty({ example: '0b6f7a52-1d7e-4a8f-9a51-2b8f1c0e6d42' }) provider_id: string;
  @ApiProperty({ example: 'team-a primary' }) label: string;
  @ApiProperty({ example: 'sk-…abcd', description: 'Enough to recognise the key, never the value' })
  masked: string;
  @ApiProperty({ example: 1 }) priority: number;
  @ApiProperty({ example: 60, nullable: true, type: Number }) max_rpm: number | null;
  @ApiProperty({ example: 100000, nullable: true, type: Number }) max_tpm: number | null;
  @ApiProperty({ example: null, nullable: true, type: Number, description: 'null = adaptive' })
  max_concurrent: number | null;
  @ApiProperty({ example: true }) enabled: boolean;
  @ApiProperty({ enum: ['active', 'cooling', 'disabled', 'broken', 'invalid'], example: 'active' })
  state: string;
  @ApiProperty({ example: null, nullable: true, type: String }) cooldown_until: string | null;
  @ApiProperty({ example: null, nullable: true, type: String }) last_429_at: string | null;
  @ApiProperty({
    example: null,
    nullable: true,
    type: String,
    description: 'When the key was found undecryptable',
  })
  broken_at: string | null;
  @ApiProperty({
    example: null,
    nullable: true,
    type: String,
    description: 'When the upstream refused it (401/403)',
  })
  invalid_at: string | null;
  @ApiProperty({ example: 1520 }) total_requests: number;
  @ApiProperty({ example: 804211 }) total_tokens: number;
  @ApiProperty({ example: '2025-11-22T10:04:00.000Z', nullable: true, type: String }) last_used_at:
    string | null;
  @ApiProperty({ example: 'k2025', description: 'ENCRYPTION_KEYS id the value is sealed under' })
  encryption_key_id: string;
  @ApiProperty({ enum: ['api', 'file'], example: 'api' }) source: string;
  @ApiProperty({ type: KeyWindowDto }) window: KeyWindowDto;
  @ApiProperty({ example: '2025-11-22T10:00:00.000Z' }) created_at: string;
  @ApiProperty({ example: '2025-11-22T10:00:00.000Z' }) updated_at: string;
}

export class UsageQueryDto {
  @ApiPropertyOptional({ example: 60, default: 60, description: 'How many minutes back (1-10080)' })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(10_080)
  minutes?: number;
}

export class UsageBucketDto {
  @ApiProperty({ example: '2025-11-22T10:04:00.000Z' }) minute: string;
  @ApiProperty({ example: 42 }) requests: number;
  @ApiProperty({ example: 18000 }) tokens: number;
  @ApiProperty({ example: 1, description: 'Upstream 429 answers' }) rate_limited: number;
  @ApiProperty({ example: 0, description: 'Upstream 5xx and transport errors' }) errors: number;
}

export class UsageTotalsDto {
  @ApiProperty({ example: 420 }) requests: number;
  @ApiProperty({ example: 180000 }) tokens: number;
  @ApiProperty({ example: 3 }) rate_limited: number;
  @ApiProperty({ example: 0 }) errors: number;
}

export class KeyUsageDto {
  @ApiProperty({ example: '5d0f3c7e-7b1a-4f3e-9a51-2b8f1c0e6d42' }) key_id: string;
  @ApiProperty({ example: 60 }) minutes: number;
  @ApiProperty({
    type: [UsageBucketDto],
    description: 'One bucket per UTC minute, oldest first, zeros included',
  })
  buckets: UsageBucketDto[];
  @ApiProperty({ type: UsageTotalsDto }) totals: UsageTotalsDto;
  @ApiProperty({ type: KeyWindowDto, description: 'The live sliding 60 s window from the shared store' })
  window: KeyWindowDto;
}

export class HealReportDto {
  @ApiProperty({
    example: 'k2025',
    description: 'The current (first) ENCRYPTION_KEYS id every healed row is now sealed under',
  })
  encryption_key_id: string;
  @ApiProperty({ example: 120, description: 'Rows that needed work: not under the current key, or broken' })
  total: number;
  @ApiProperty({ example: 119, description: 'Re-encrypted under the current key' })
  healed: number;
  @ApiProperty({
    example: 0,
    description: 'Broken rows that decrypt again (their key came back) and were re-encrypted',
  })
  recovered: number;
  @ApiProperty({
    example: 1,
    description:
      'Rows no configured key decrypts (state `broken`): replace their value, or restore the missing key',
  })
  broken: number;
}
