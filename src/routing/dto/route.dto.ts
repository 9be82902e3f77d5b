import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import {
  ArrayMaxSize,
  ArrayMinSize,
  IsArray,
  IsBoolean,
  IsIn,
  IsInt,
  IsObject,
  IsOptional,
  IsString,
  IsUUID,
  Max,
  MaxLength,
  Min,
  MinLength,
  ValidateNested,
} from 'class-validator';
import { OptionalNotNull } from '../../common/validation.js';
import { BREAKER_FORCES, ROUTE_DEFAULTS, ROUTE_LIMITS as L } from '../domain/route-rules.js';

const PROVIDER_ID_EXAMPLE = '0b6f7a52-1d7e-4a8f-9a51-2b8f1c0e6d42';

export class TargetTimeoutsDto {
  @ApiPropertyOptional({
    example: 2000,
    nullable: true,
    type: Number,
    description: `TCP/TLS connect, ${L.timeoutMinMs}-${L.timeoutMaxMs} ms; null = the provider's timeout_ms`,
  })
  @IsOptional()
  @IsInt()
  @Min(L.timeoutMinMs)
  @Max(L.timeoutMaxMs)
  connect_ms?: number | null;

  @ApiPropertyOptional({
    example: 10000,
    nullable: true,
    type: Number,
    description: 'Request sent → response headers (a stream’s first byte); null = the provider’s',
  })
  @IsOptional()
  @IsInt()
  @Min(L.timeoutMinMs)
  @Max(L.timeoutMaxMs)
  first_byte_ms?: number | null;

  @ApiPropertyOptional({
    example: 60000,
    nullable: true,
    type: Number,
    description: 'Whole non-streamed exchange; null = the provider’s',
  })
  @IsOptional()
  @IsInt()
  @Min(L.timeoutMinMs)
  @Max(L.timeoutMaxMs)
  total_ms?: number | null;

  @ApiPropertyOptional({
    example: 300000,
    nullable: true,
    type: Number,
    description: 'Whole streamed exchange; null = the provider’s',
  })
  @IsOptional()
  @IsInt()
  @Min(L.timeoutMinMs)
  @Max(L.timeoutMaxMs)
  stream_total_ms?: number | null;
}

export class RouteTargetInputDto {
  @ApiProperty({ example: PROVIDER_ID_EXAMPLE, description: 'Id of an existing provider' })
  @IsString()
  @IsUUID('all', { message: 'provider_id must be a uuid' })
  provider_id: string;

  @ApiProperty({
    example: 'gpt-4o-mini',
    description: `The model the upstream receives (1-${L.modelMaxLength})`,
  })
  @IsString()
  @MinLength(1)
  @MaxLength(L.modelMaxLength)
  model: string;

  @ApiPropertyOptional({
    example: 3,
    default: ROUTE_DEFAULTS.weight,
    description: `Share of traffic within its tier, integer ${L.weightMin}-${L.weightMax}`,
  })
  @OptionalNotNull()
  @IsInt()
  @Min(L.weightMin)
  @Max(L.weightMax)
  weight?: number;

  @ApiPropertyOptional({
    example: 1,
    default: ROUTE_DEFAULTS.tier,
    description: `1 = preferred; a higher tier only when every lower one can't take the request (${L.tierMin}-${L.tierMax})`,
  })
  @OptionalNotNull()
  @IsInt()
  @Min(L.tierMin)
  @Max(L.tierMax)
  tier?: number;

  @ApiPropertyOptional({
    type: TargetTimeoutsDto,
    nullable: true,
    description: "Per-target timeouts overriding the provider's timeout_ms; null or absent = the provider's",
  })
  @IsOptional()
  @IsObject()
  @ValidateNested()
  @Type(() => TargetTimeoutsDto)
  timeouts?: TargetTimeoutsDto | null;

  @ApiPropertyOptional({
    enum: BREAKER_FORCES,
    default: ROUTE_DEFAULTS.breaker,
    example: 'auto',
    description: '`auto`: the circuit breaker decides; `open`: never send here; `closed`: always eligible',
  })
  @OptionalNotNull()
  @IsIn(BREAKER_FORCES)
  breaker?: 'auto' | 'open' | 'closed';
}

const TARGETS_EXAMPLE = [
  { provider_id: PROVIDER_ID_EXAMPLE, model: 'gpt-4o-mini', weight: 3, tier: 1 },
  { provider_id: '7c1e1d0a-5b55-4c43-9a0e-3f1f6f3c2b10', model: 'llama-3.1-8b', weight: 1, tier: 2 },
];

export class CreateRouteDto {
  @ApiProperty({
    example: 'chat-default',
    description: `The model name clients send (unique; 1-${L.modelMaxLength} characters, no "*", no control characters). May equal a provider's model id: the route wins.`,
  })
  @IsString()
  model: string;

  @ApiProperty({
    type: [RouteTargetInputDto],
    example: TARGETS_EXAMPLE,
    description: `${L.targetsMin}-${L.targetsMax} targets, no two with the same (provider_id, model)`,
  })
  @IsArray()
  @ArrayMinSize(L.targetsMin)
  @ArrayMaxSize(L.targetsMax)
  @ValidateNested({ each: true })
  @Type(() => RouteTargetInputDto)
  targets: RouteTargetInputDto[];

  @ApiPropertyOptional({
    example: 3,
    default: ROUTE_DEFAULTS.maxAttempts,
    description: `Upper bound on attempts (first try + fallbacks) per request, ${L.maxAttemptsMin}-${L.maxAttemptsMax}`,
  })
  @OptionalNotNull()
  @IsInt()
  @Min(L.maxAttemptsMin)
  @Max(L.maxAttemptsMax)
  max_attempts?: number;

  @ApiPropertyOptional({
    example: true,
    default: ROUTE_DEFAULTS.enabled,
    description: 'A disabled route resolves to nothing',
  })
  @OptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({
    example: false,
    default: false,
    description:
      "Store this route's request and response bodies, secrets redacted, each capped at BODY_CAPTURE_MAX_BYTES, kept BODY_CAPTURE_RETENTION_DAYS (docs/requests.md)",
  })
  @OptionalNotNull()
  @IsBoolean()
  capture_bodies?: boolean;
}

export class UpdateRouteDto {
  @ApiPropertyOptional({ example: 'chat-fast' })
  @OptionalNotNull()
  @IsString()
  model?: string;

  @ApiPropertyOptional({
    type: [RouteTargetInputDto],
    example: TARGETS_EXAMPLE,
    description: 'Replaces the whole list when given',
  })
  @OptionalNotNull()
  @IsArray()
  @ArrayMinSize(L.targetsMin)
  @ArrayMaxSize(L.targetsMax)
  @ValidateNested({ each: true })
  @Type(() => RouteTargetInputDto)
  targets?: RouteTargetInputDto[];

  @ApiPropertyOptional({ example: 2 })
  @OptionalNotNull()
  @IsInt()
  @Min(L.maxAttemptsMin)
  @Max(L.maxAttemptsMax)
  max_attempts?: number;

  @ApiPropertyOptional({ example: false })
  @OptionalNotNull()
  @IsBoolean()
  enabled?: boolean;

  @ApiPropertyOptional({
    example: false,
    default: false,
    description:
      "Store this route's request and response bodies, secrets redacted, each capped at BODY_CAPTURE_MAX_BYTES, kept BODY_CAPTURE_RETENTION_DAYS (docs/requests.md)",
  })
  @OptionalNotNull()
  @IsBoolean()
  capture_bodies?: boolean;
}

export class TargetTimeoutsViewDto {
  @ApiProperty({ example: 2000, nullable: true, type: Number }) connect_ms: number | null;
  @ApiProperty({ example: 10000, nullable: true, type: Number }) first_byte_ms: number | null;
  @ApiProperty({ example: 60000, nullable: true, type: Number }) total_ms: number | null;
  @ApiProperty({ example: null, nullable: true, type: Number }) stream_total_ms: number | null;
}

export class RouteTargetDto {
  @ApiProperty({ example: PROVIDER_ID_EXAMPLE }) provider_id: string;
  @ApiProperty({
    example: 'openai',
    nullable: true,
    type: String,
    description:
      "The provider's name (read-only); null when the provider was deleted (the relay skips the target)",
  })
  provider: string | null;
  @ApiProperty({ example: 'gpt-4o-mini' }) model: string;
  @ApiProperty({ example: 3 }) weight: number;
  @ApiProperty({ example: 1 }) tier: number;
  @ApiProperty({ type: TargetTimeoutsViewDto, nullable: true }) timeouts: TargetTimeoutsViewDto | null;
  @ApiProperty({ enum: BREAKER_FORCES, example: 'auto' }) breaker: 'auto' | 'open' | 'closed';
}

export class RouteDto {
  @ApiProperty({ example: '5d0c8f3e-2a61-4c55-9b7a-0f1e2d3c4b5a' }) id: string;
  @ApiProperty({ example: 'chat-default' }) model: string;
  @ApiProperty({ type: [RouteTargetDto] }) targets: RouteTargetDto[];
  @ApiProperty({ example: 3 }) max_attempts: number;
  @ApiProperty({ example: true }) enabled: boolean;
  @ApiProperty({ example: false, description: 'Bodies of its requests are captured (docs/requests.md)' })
  capture_bodies: boolean;
  @ApiProperty({ enum: ['api', 'file'], example: 'api', description: '`file`: managed by PROVIDERS_FILE' })
  source: 'api' | 'file';
  @ApiProperty({ example: '2025-11-22T10:00:00.000Z' }) created_at: string;
  @ApiProperty({ example: '2025-11-22T10:00:00.000Z' }) updated_at: string;
}
