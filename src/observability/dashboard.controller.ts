import { Controller, Get, Header, Res } from '@nestjs/common';
import {
  ApiOkResponse,
  ApiOperation,
  ApiProduces,
  ApiServiceUnavailableResponse,
  ApiTags,
} from '@nestjs/swagger';
import type { FastifyReply } from 'fastify';
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { ApiError } from '../common/api-error.js';
import { ErrorResponseDto } from '../common/error.dto.js';
import { Public } from '../common/public.decorator.js';
import { CONSOLE_JS } from './dashboard/console-script.js';
import { DASHBOARD_CSS, DASHBOARD_HTML, DASHBOARD_JS } from './dashboard-page.js';

/** Everything the page loads comes from this gateway: no CDN, works air-gapped. */
const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
  "font-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

let chartScript: Promise<Buffer> | undefined;

/** chart.js's UMD build from node_modules (a runtime dependency), read once. */
function loadChartScript(): Promise<Buffer> {
  if (!chartScript) {
    const require = createRequire(import.meta.url);
    const path = join(dirname(require.resolve('chart.js')), 'chart.umd.js');
    chartScript = readFile(path);
    chartScript.catch(() => (chartScript = undefined));
  }
  return chartScript;
}

/**
 * GET /dashboard: the live page and admin console. Public on purpose — it holds no data; it asks for
 * an API key once (kept in the tab's sessionStorage) and reads /api/admin/status and its SSE stream
 * with it; the console tabs call the admin API with the same key (the API decides what it may do).
 */
@ApiTags('observability')
@Public()
@Controller('dashboard')
export class DashboardController {
  @Get()
  @ApiOperation({
    summary: 'Live dashboard (HTML)',
    description:
      'Token bucket and retreat state per provider, queue depth per priority, throughput and 429s over the last ' +
      'minutes, the upstream key table and recent adaptive adjustments, updated every second over SSE; spend today and ' +
      'this month per team and per model from GET /api/admin/spend/summary every 30 s. Asks for an ' +
      'API key allowed to read status (admin, developer, viewer). Tabs besides this Overview make it an admin ' +
      'console over the existing admin API, with the same key: client API keys (create for a user, the raw key shown ' +
      'once; revoke), providers and their upstream keys, routes, user and team budgets, and a request browser. ' +
      'Actions the role may not do (GET /api/me permissions) are hidden; the API decides and its error is shown. ' +
      'Scripts and the chart library are served by the gateway itself (no CDN).',
  })
  @ApiProduces('text/html')
  @ApiOkResponse({ description: 'The page', content: { 'text/html': { example: '<!doctype html>…' } } })
  @Header('content-type', 'text/html; charset=utf-8')
  @Header('cache-control', 'no-cache')
  @Header('content-security-policy', CSP)
  @Header('x-content-type-options', 'nosniff')
  @Header('referrer-policy', 'no-referrer')
  @Header('x-frame-options', 'DENY')
  page(): string {
    return DASHBOARD_HTML;
  }

  @Get('assets/dashboard.js')
  @ApiOperation({ summary: 'Dashboard script' })
  @ApiProduces('text/javascript')
  @ApiOkResponse({
    description: 'JavaScript',
    content: { 'text/javascript': { example: '(function () { … })();' } },
  })
  @Header('content-type', 'text/javascript; charset=utf-8')
  @Header('cache-control', 'no-cache')
  @Header('x-content-type-options', 'nosniff')
  script(): string {
    return DASHBOARD_JS;
  }

  @Get('assets/console.js')
  @ApiOperation({ summary: 'Admin console script (the tabs besides Overview)' })
  @ApiProduces('text/javascript')
  @ApiOkResponse({
    description: 'JavaScript',
    content: { 'text/javascript': { example: '(function () { … })();' } },
  })
  @Header('content-type', 'text/javascript; charset=utf-8')
  @Header('cache-control', 'no-cache')
  @Header('x-content-type-options', 'nosniff')
  consoleScript(): string {
    return CONSOLE_JS;
  }

  @Get('assets/dashboard.css')
  @ApiOperation({ summary: 'Dashboard stylesheet' })
  @ApiProduces('text/css')
  @ApiOkResponse({ description: 'CSS', content: { 'text/css': { example: ':root { … }' } } })
  @Header('content-type', 'text/css; charset=utf-8')
  @Header('cache-control', 'no-cache')
  @Header('x-content-type-options', 'nosniff')
  style(): string {
    return DASHBOARD_CSS;
  }

  @Get('assets/chart.umd.js')
  @ApiOperation({ summary: 'Chart.js (UMD build), served from the installed npm package' })
  @ApiProduces('text/javascript')
  @ApiOkResponse({
    description: 'JavaScript',
    content: { 'text/javascript': { example: '/*! Chart.js v4 … */' } },
  })
  @ApiServiceUnavailableResponse({
    description: 'chart.js is missing from node_modules',
    type: ErrorResponseDto,
  })
  async chart(@Res({ passthrough: true }) reply: FastifyReply): Promise<Buffer> {
    let body: Buffer;
    try {
      body = await loadChartScript();
    } catch {
      throw ApiError.serviceUnavailable(
        'The chart library (npm package chart.js) is not installed',
        undefined,
        'chart_library_missing',
      );
    }
    void reply
      .header('content-type', 'text/javascript; charset=utf-8')
      .header('cache-control', 'public, max-age=86400')
      .header('x-content-type-options', 'nosniff');
    return body;
  }
}
