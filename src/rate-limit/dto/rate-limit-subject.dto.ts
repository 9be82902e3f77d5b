import { ApiProperty } from '@nestjs/swagger';
import type { SubjectReport } from '../rate-limit.service.js';

export class RateLimitPolicyStateDto {
  @ApiProperty({ example: 'key', description: 'key, tpm, user, ip, or a route policy name' })
  name: string;

  @ApiProperty({ enum: ['sliding_window', 'token_bucket'], example: 'sliding_window' })
  algorithm: string;

  @ApiProperty({
    enum: ['requests', 'tokens'],
    example: 'requests',
    description: 'tokens for the TPM budget',
  })
  unit: string;

  @ApiProperty({ example: 60, description: 'Per window (token bucket: refill per window)' })
  limit: number;

  @ApiProperty({ example: 60, description: 'Token bucket capacity; equals limit for a sliding window' })
  burst: number;

  @ApiProperty({ example: 57, description: 'What the next requests may still take right now' })
  remaining: number;

  @ApiProperty({ example: 12, description: 'Seconds until remaining next grows (0: nothing to wait for)' })
  reset_seconds: number;

  @ApiProperty({ example: 3, description: 'Counted in the current window (token bucket: tokens in use)' })
  current: number;

  @ApiProperty({ example: 60 })
  window_seconds: number;
}

export class RateLimitSubjectDto {
  @ApiProperty({ example: 'key:7d1f6c2e-3c4b-4e0a-9a51-2b8f1c0e6d42' })
  subject: string;

  @ApiProperty({ type: [RateLimitPolicyStateDto] })
  policies: RateLimitPolicyStateDto[];
}

export function toSubjectDto(report: SubjectReport): RateLimitSubjectDto {
  return {
    subject: report.subject,
    policies: report.policies.map((p) => ({
      name: p.name,
      algorithm: p.algorithm,
      unit: p.unit,
      limit: p.limit,
      burst: p.burst,
      remaining: p.remaining,
      reset_seconds: Math.max(0, Math.ceil(p.resetMs / 1000)),
      current: p.current,
      window_seconds: p.windowSeconds,
    })),
  };
}
