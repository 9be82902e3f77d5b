import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsBoolean, IsDefined, IsInt, IsOptional, IsUUID, Max, Min } from 'class-validator';

/** Seed 001's field names; `provider_id` replaces the seed's `endpoint_id`. */

export class ListAdaptiveKeysQueryDto {
  @ApiPropertyOptional({
    description: 'Only the keys of this provider',
    example: '9b2e4f1a-6c3d-4e8f-a1b2-c3d4e5f6a7b8',
  })
  @IsOptional()
  @IsUUID()
  provider_id?: string;
}

export class ToggleModeDto {
  @ApiProperty({
    description: 'true = adaptive (max_concurrent = null, the limit is learned); false = fixed limit',
    example: false,
  })
  @IsDefined()
  @IsBoolean()
  enabled: boolean;

  @ApiPropertyOptional({
    description: 'The fixed concurrency limit (1-100); required when enabled is false, ignored otherwise',
    example: 8,
    nullable: true,
    type: Number,
  })
  @IsOptional()
  @IsInt()
  @Min(1)
  @Max(100)
  fixed_limit?: number | null;
}

export class SetLimitQueryDto {
  @ApiProperty({ description: 'The fixed concurrency limit (1-100)', example: 8 })
  @IsDefined()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(100)
  limit: number;
}

export class AdjustmentDto {
  @ApiProperty({ example: '2025-11-22T10:14:01.000Z' }) timestamp: string;
  @ApiProperty({ example: 5 }) old_limit: number;
  @ApiProperty({ example: 4 }) new_limit: number;
  @ApiProperty({
    example: 'concurrency_429',
    description: 'concurrency_429 | unknown_429 | high_utilisation | probe',
  })
  reason: string;
  @ApiProperty({
    example: 5,
    description: 'In-flight requests on the key when the deciding request took its slot',
  })
  in_flight: number;
}

export class AdaptiveKeyListItemDto {
  @ApiProperty({ example: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f' }) id: string;
  @ApiProperty({ example: 'primary', nullable: true, type: String, description: "The key's label" }) name:
    string | null;
  @ApiProperty({ example: '9b2e4f1a-6c3d-4e8f-a1b2-c3d4e5f6a7b8' }) provider_id: string;
  @ApiProperty({ example: true, description: 'Adaptive mode (max_concurrent = null)' }) is_adaptive: boolean;
  @ApiProperty({ example: null, nullable: true, type: Number }) max_concurrent: number | null;
  @ApiProperty({
    example: 4,
    nullable: true,
    type: Number,
    description: 'The limit enforced now (learned, or the initial limit before any learning)',
  })
  effective_limit: number | null;
  @ApiProperty({
    example: 4,
    nullable: true,
    type: Number,
    description: 'The learned limit; null until something was learned',
  })
  learned_max_concurrent: number | null;
  @ApiProperty({ example: 3 }) concurrent_429_count: number;
  @ApiProperty({ example: 0, description: 'RPM and TPM 429s' }) rpm_429_count: number;
}

export class ToggleModeResponseDto {
  @ApiProperty({ example: 'Switched to fixed limit mode; concurrency limit set to 8' }) message: string;
  @ApiProperty({ example: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f' }) key_id: string;
  @ApiProperty({ example: false }) is_adaptive: boolean;
  @ApiProperty({ example: 8, nullable: true, type: Number }) max_concurrent: number | null;
  @ApiProperty({ example: 8, nullable: true, type: Number }) effective_limit: number | null;
}

export class AdaptiveStatsDto {
  @ApiProperty({ example: true, description: 'Adaptive mode (max_concurrent = null)' })
  adaptive_mode: boolean;
  @ApiProperty({ example: null, nullable: true, type: Number }) max_concurrent: number | null;
  @ApiProperty({
    example: 4,
    nullable: true,
    type: Number,
    description: 'Learned (or initial) in adaptive mode, the configured value in fixed mode',
  })
  effective_limit: number | null;
  @ApiProperty({ example: 4, nullable: true, type: Number }) learned_limit: number | null;
  @ApiProperty({ example: 3 }) concurrent_429_count: number;
  @ApiProperty({ example: 0, description: 'RPM and TPM 429s' }) rpm_429_count: number;
  @ApiProperty({ example: '2025-11-22T10:14:01.000Z', nullable: true, type: String }) last_429_at:
    string | null;
  @ApiProperty({
    example: 'concurrency',
    nullable: true,
    type: String,
    description: 'concurrency | rpm | tpm | unknown',
  })
  last_429_type: string | null;
  @ApiProperty({ example: 2, description: 'Adjustments kept in the history (at most 20)' })
  adjustment_count: number;
  @ApiProperty({ type: [AdjustmentDto], description: 'Newest first' }) recent_adjustments: AdjustmentDto[];
}

export class ResetLearningResponseDto {
  @ApiProperty({ example: 'Learning state reset' }) message: string;
  @ApiProperty({ example: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f' }) key_id: string;
}

export class SetLimitResponseDto {
  @ApiProperty({ example: 'Set to fixed limit mode; concurrency limit is 8' }) message: string;
  @ApiProperty({ example: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f' }) key_id: string;
  @ApiProperty({ example: false }) is_adaptive: boolean;
  @ApiProperty({ example: 8 }) max_concurrent: number;
  @ApiProperty({ example: 'adaptive', enum: ['adaptive', 'fixed'] }) previous_mode: 'adaptive' | 'fixed';
}

export class SummaryAdjustmentDto extends AdjustmentDto {
  @ApiProperty({ example: '5c6d7e8f-9a0b-4c1d-8e2f-3a4b5c6d7e8f' }) key_id: string;
  @ApiProperty({ example: 'primary', nullable: true, type: String }) key_name: string | null;
}

export class AdaptiveSummaryDto {
  @ApiProperty({ example: 3 }) total_adaptive_keys: number;
  @ApiProperty({ example: 7 }) total_concurrent_429_errors: number;
  @ApiProperty({ example: 1, description: 'RPM and TPM 429s' }) total_rpm_429_errors: number;
  @ApiProperty({ example: 5, description: 'Adjustments kept in the histories (at most 20 per key)' })
  total_adjustments: number;
  @ApiProperty({
    type: [SummaryAdjustmentDto],
    description: 'The 10 most recent adjustments of adaptive keys, newest first',
  })
  recent_adjustments: SummaryAdjustmentDto[];
}
