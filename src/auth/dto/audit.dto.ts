import { ApiProperty, ApiPropertyOptional } from '@nestjs/swagger';
import { Type } from 'class-transformer';
import { IsInt, IsISO8601, IsOptional, IsString, IsUUID, Max, MaxLength, Min } from 'class-validator';
import type { AuditService } from '../../audit/audit.service.js';

/** An audit row, typed through AuditService's public surface (the entity is the audit module's internal). */
type AuditEntry = Awaited<ReturnType<AuditService['list']>>[number];

export class AuditQueryDto {
  @ApiPropertyOptional({ example: 100, minimum: 1, maximum: 500 })
  @IsOptional()
  @Type(() => Number)
  @IsInt()
  @Min(1)
  @Max(500)
  limit?: number;

  @ApiPropertyOptional({
    example: '2025-11-22T10:00:00Z',
    description: 'Entries strictly older than this (paging: pass next_before)',
  })
  @IsOptional()
  @IsISO8601({ strict: true })
  before?: string;

  @ApiPropertyOptional({ example: 'api_key.revoke' })
  @IsOptional()
  @IsString()
  @MaxLength(64)
  action?: string;

  @ApiPropertyOptional({ example: 'api_key' })
  @IsOptional()
  @IsString()
  @MaxLength(32)
  target_type?: string;

  @ApiPropertyOptional({ format: 'uuid' })
  @IsOptional()
  @IsUUID()
  actor_id?: string;
}

export class AuditEntryDto {
  @ApiProperty({ example: 'e2c5a8f1-0c9d-4b7e-8a6f-5d4c3b2a1f0e', format: 'uuid' })
  id: string;

  @ApiProperty({ example: '7c1e2f0a-5b8d-4e7f-a3c2-1d9e8f7a6b5c', nullable: true, type: String })
  actor_id: string | null;

  @ApiProperty({ example: 'admin', nullable: true, type: String })
  actor_role: string | null;

  @ApiProperty({ example: 'api_key.revoke' })
  action: string;

  @ApiProperty({ example: 'api_key' })
  target_type: string;

  @ApiProperty({ example: '0b6f4a52-2d55-4c2e-9d43-8f1f2f0c9a11', nullable: true, type: String })
  target_id: string | null;

  @ApiProperty({
    example: { owner_id: '7c1e2f0a-5b8d-4e7f-a3c2-1d9e8f7a6b5c' },
    type: 'object',
    additionalProperties: true,
  })
  changes: Record<string, unknown>;

  @ApiProperty({ example: '10.0.0.7', nullable: true, type: String })
  ip: string | null;

  @ApiProperty({ example: '5d0f3c7e-7b1a-4f3e-9a51-2b8f1c0e6d42', nullable: true, type: String })
  request_id: string | null;

  @ApiProperty({ example: '2025-11-22T10:00:00.000Z' })
  created_at: string;
}

export class AuditListDto {
  @ApiProperty({ type: [AuditEntryDto] })
  data: AuditEntryDto[];

  @ApiProperty({
    example: '2025-11-22T09:58:00.000Z',
    nullable: true,
    type: String,
    description: 'Pass as `before` for the next page; null on the last page',
  })
  next_before: string | null;
}

export function toAuditEntryDto(entry: AuditEntry): AuditEntryDto {
  return {
    id: entry.id,
    actor_id: entry.actorId,
    actor_role: entry.actorRole,
    action: entry.action,
    target_type: entry.targetType,
    target_id: entry.targetId,
    changes: entry.changes,
    ip: entry.ip,
    request_id: entry.requestId,
    created_at: entry.createdAt.toISOString(),
  };
}
