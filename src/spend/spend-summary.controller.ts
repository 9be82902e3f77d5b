import { Controller, Get } from '@nestjs/common';
import { ApiOkResponse, ApiOperation, ApiTags } from '@nestjs/swagger';
import { RequirePermission } from '../common/permissions.js';
import { SpendSummaryDto } from './dto/spend-summary.dto.js';
import { SpendSummaryService } from './services/spend-summary.service.js';

const EXAMPLE: SpendSummaryDto = {
  generated_at: '2026-12-06T10:15:02.000Z',
  today_from: '2026-12-06T00:00:00.000Z',
  month_from: '2026-12-01T00:00:00.000Z',
  total: { today: { requests: 45, cost_usd: 0.01234 }, month: { requests: 1200, cost_usd: 3.5 } },
  by_team: [
    {
      team_id: '3f1c2d4e-5a6b-4c7d-8e9f-0a1b2c3d4e5f',
      team_name: 'research',
      today: { requests: 42, cost_usd: 0.012 },
      month: { requests: 1100, cost_usd: 3.4 },
    },
    {
      team_id: null,
      team_name: null,
      today: { requests: 3, cost_usd: 0.00034 },
      month: { requests: 100, cost_usd: 0.1 },
    },
  ],
  by_model: [
    {
      model: 'gpt-4o-mini',
      today: { requests: 45, cost_usd: 0.01234 },
      month: { requests: 1200, cost_usd: 3.5 },
    },
  ],
};

@ApiTags('spend')
@Controller('api/admin/spend/summary')
export class SpendSummaryController {
  constructor(private readonly summary: SpendSummaryService) {}

  @Get()
  @RequirePermission('spend', 'read')
  @ApiOperation({
    summary: 'Spend today and this month, per team and per model (the dashboard’s Spend panel)',
    description:
      'Requests and cost since the start of the UTC day and of the UTC month, per team (with its current name; ' +
      '`team_id` null: callers without a team) and per served model, biggest monthly cost first. Summed from the ' +
      'hourly rollups and cached for 30 s on each instance, shared by every caller: at most one rollup query per ' +
      'instance per 30 s however many dashboards are open.',
  })
  @ApiOkResponse({ type: SpendSummaryDto, schema: { example: EXAMPLE } })
  get(): Promise<SpendSummaryDto> {
    return this.summary.summary();
  }
}
