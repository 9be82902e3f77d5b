import { Controller, Get, Query } from '@nestjs/common';
import { ApiBadRequestResponse, ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { CurrentPrincipal } from '../common/current-principal.decorator.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { RequirePermission } from '../common/permissions.js';
import type { Principal } from '../common/principal.js';
import { OwnSpendQueryDto, SpendQueryDto, SpendResponseDto } from './dto/spend.dto.js';
import { SpendService } from './services/spend.service.js';

const EXAMPLE = {
  data: [
    {
      group: '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f',
      interval_start: '2026-12-01T10:00:00.000Z',
      requests: 42,
      prompt_tokens: 12345,
      completion_tokens: 6789,
      cost_usd: 0.005925,
    },
  ],
};

const BAD_QUERY = {
  description:
    'A bad parameter; `error.param` names it (`group_by`, `interval`, `from`, `to`): an unknown value, a time that is not ISO 8601 with a zone, from not before to, or a span over 31 days hourly / 366 days daily',
  type: ErrorResponseDto,
};

const SOURCE =
  'Summed from hourly rollups that the request log’s batch writer updates in the same statement as the rows (at most about a second behind), never from a scan of the request log. Costs are integer micro-dollars per request (tokens × the price of the provider and model that served it; docs/spend.md), shown as USD. Only groups × intervals with requests appear.';

@ApiTags('spend')
@Controller('api/admin/spend')
export class AdminSpendController {
  constructor(private readonly spend: SpendService) {}

  @Get()
  @RequirePermission('spend', 'read')
  @ApiOperation({
    summary: 'Spend by key, user, team, model or provider',
    description: `Requests, tokens and cost per \`group_by\` and \`interval\` (hour or UTC day) between \`from\` and \`to\` (default: the last 24 hours). ${SOURCE}`,
  })
  @ApiOkResponse({ type: SpendResponseDto, schema: { example: EXAMPLE } })
  @ApiBadRequestResponse(BAD_QUERY)
  list(@Query() query: SpendQueryDto): Promise<SpendResponseDto> {
    return this.spend.all(query);
  }
}

@ApiTags('spend')
@Controller('api/me/spend')
export class OwnSpendController {
  constructor(private readonly spend: SpendService) {}

  @Get()
  @RequirePermission('spend', 'read', 'own')
  @ApiOperation({
    summary: 'Your own spend',
    description: `The caller’s spend: every request made with their API keys (and their own sessions), per \`group_by\` (\`key\`, \`model\` or \`provider\`) and \`interval\`. ${SOURCE}`,
  })
  @ApiOkResponse({ type: SpendResponseDto, schema: { example: EXAMPLE } })
  @ApiBadRequestResponse(BAD_QUERY)
  list(
    @CurrentPrincipal() principal: Principal,
    @Query() query: OwnSpendQueryDto,
  ): Promise<SpendResponseDto> {
    return this.spend.own(principal, query);
  }
}
