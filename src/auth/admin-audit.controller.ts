import { Controller, Get, Query } from '@nestjs/common';
import { ApiBadRequestResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { AuditService } from '../audit/audit.service.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import { AuditListDto, AuditQueryDto, toAuditEntryDto } from './dto/audit.dto.js';

@ApiTags('admin: audit')
@Controller('api/admin/audit')
export class AdminAuditController {
  constructor(private readonly audit: AuditService) {}

  @Get()
  @RequirePermission('audit', 'read')
  @ApiOperation({
    summary: 'The audit log of admin writes',
    description:
      'Newest first. Each entry: actor, action, target, changed fields (secret values redacted), ip, request id, time.',
  })
  @ApiOkResponse({ type: AuditListDto })
  @ApiBadRequestResponse({ description: 'Invalid query', type: ErrorResponseDto })
  async list(@Query() query: AuditQueryDto): Promise<AuditListDto> {
    const limit = query.limit ?? 100;
    const entries = await this.audit.list({
      limit,
      before: query.before ? new Date(query.before) : undefined,
      action: query.action,
      targetType: query.target_type,
      actorId: query.actor_id,
    });
    return {
      data: entries.map(toAuditEntryDto),
      next_before: entries.length === limit ? entries[entries.length - 1]!.createdAt.toISOString() : null,
    };
  }
}
