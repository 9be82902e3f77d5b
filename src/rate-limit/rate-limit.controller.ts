import { Controller, Delete, Get, HttpCode, Param, Req } from '@nestjs/common';
import {
  ApiBadRequestResponse,
  ApiNoContentResponse,
  ApiNotFoundResponse,
  ApiOkResponse,
  ApiOperation,
  ApiParam,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyRequest } from 'fastify';
import { DataSource } from 'typeorm';
import { AuditService } from '../audit/audit.service.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import { RateLimitSubjectDto, toSubjectDto } from './dto/rate-limit-subject.dto.js';
import { RateLimitService } from './rate-limit.service.js';

const SUBJECT_PARAM = {
  name: 'subject',
  description:
    "`key:{api_key_id}`, `user:{user_id}`, `team:{team_id}` (the team policies `team` and `team_tpm`, shared by its members' keys) or `ip:{address}` (an IPv6 address means its /64)",
  examples: {
    key: { value: 'key:7d1f6c2e-3c4b-4e0a-9a51-2b8f1c0e6d42' },
    user: { value: 'user:0b8e7a52-6f0c-4a55-b5a4-1c0d6d1e2f3a' },
    team: { value: 'team:3f6d2a1b-8c4e-4b7a-9e21-5d0c7f1a2b3c' },
    ip: { value: 'ip:203.0.113.7' },
  },
};

@ApiTags('admin: rate limits')
@Controller('api/admin/rate-limits')
export class RateLimitController {
  constructor(
    private readonly limiter: RateLimitService,
    private readonly audit: AuditService,
    private readonly dataSource: DataSource,
  ) {}

  @Get(':subject')
  @RequirePermission('rate_limits', 'read')
  @ApiOperation({
    summary: "A subject's rate-limit state",
    description:
      'Every policy that counts this subject, read without consuming anything: an API key shows its ' +
      'per-key policy (its own rpm or the default) and its TPM budget when it has one; a team its `team` ' +
      '(rpm) and `team_tpm` policies when set (none: an empty list); route policies declared with ' +
      '@RateLimit are listed too (not for teams).',
  })
  @ApiParam(SUBJECT_PARAM)
  @ApiOkResponse({ type: RateLimitSubjectDto })
  @ApiBadRequestResponse({ description: 'Malformed subject', type: ErrorResponseDto })
  @ApiNotFoundResponse({ description: 'No such API key or team', type: ErrorResponseDto })
  @ApiServiceUnavailableResponse({
    description: 'The rate limiter store cannot answer',
    type: ErrorResponseDto,
  })
  async get(@Param('subject') subject: string): Promise<RateLimitSubjectDto> {
    return toSubjectDto(await this.limiter.inspect(subject));
  }

  @Delete(':subject')
  @HttpCode(204)
  @RequirePermission('rate_limits', 'write')
  @ApiOperation({
    summary: "Reset a subject's counters",
    description:
      'Forgets every counter of the subject on every instance at once (all policies, all algorithms). Idempotent; audited as rate_limit.reset.',
  })
  @ApiParam(SUBJECT_PARAM)
  @ApiNoContentResponse({ description: 'Reset' })
  @ApiBadRequestResponse({ description: 'Malformed subject', type: ErrorResponseDto })
  @ApiServiceUnavailableResponse({
    description: 'The rate limiter store cannot answer',
    type: ErrorResponseDto,
  })
  async reset(@Param('subject') subject: string, @Req() request: FastifyRequest): Promise<void> {
    const parsed = this.limiter.parse(subject);
    // The audit row first, the reset (in Redis) inside its transaction: a refused row resets
    // nothing, a failed reset leaves no row.
    await this.dataSource.transaction(async (m) => {
      await this.audit.record(m, request, {
        action: 'rate_limit.reset',
        targetType: 'rate_limit_subject',
        targetId: parsed.text,
        changes: { subject: parsed.text },
      });
      await this.limiter.reset(subject);
    });
  }
}
