import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { DataSource } from 'typeorm';
import { BreakerService } from '../../src/routing/services/breaker.service.js';
import { SpendRepository } from '../../src/spend/infrastructure/spend.repository.js';
import { bearer, createUserWithKey } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { startRelay, type RelayFixture } from '../support/relay.js';

// Browser globals inside page.evaluate callbacks (the project compiles without the DOM lib).
declare const document: any;
declare const window: any;
declare const sessionStorage: any;
type HTMLCanvasElement = any;

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SCREENSHOT = 'test-results/dashboard.png';

/**
 * The dashboard in a real browser (Debian's chromium driven by playwright-core): asks for the key,
 * renders the charts from the gateway's own chart.js, updates live over SSE, shows honest empty
 * states, and leaves a screenshot as a test artifact.
 */
describe('dashboard in a browser', () => {
  let gw: TestGateway;
  let browser: Browser;
  let page: Page;
  const admin = `fg_${randomBytes(32).toString('base64url')}`;
  const problems: string[] = [];
  /** While a wrong key is tried on purpose, Chrome's "Failed to load resource: … 401" is expected. */
  let expectingAuthFailure = false;
  let demoProviderId = '';

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: the dashboard browser test needs it. ` +
          'Install it with `apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this in CI), ' +
          'or point CHROMIUM_PATH at a Chromium binary.',
      );
    }
    gw = await startGateway('embedded', { ADMIN_BOOTSTRAP_KEY: admin });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--headless',
        '--disable-gpu',
        '--disable-background-networking',
        '--disable-component-update',
        '--no-first-run',
      ],
    });
    page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      if (expectingAuthFailure && /status of 401/.test(msg.text())) return;
      problems.push(`console: ${msg.text()}`);
    });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('requestfailed', (req) => {
      // The SSE fetch is aborted when the page goes away; anything else failing is a defect.
      if (!req.url().includes('/api/admin/status/stream')) problems.push(`request failed: ${req.url()}`);
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.close();
  });

  async function statNumber(id: string): Promise<number> {
    return Number((await page.locator(`#${id}`).textContent())!.replace(/[^0-9]/g, ''));
  }

  it('asks for a key, refuses a wrong one, then renders the charts and the empty state', async () => {
    await page.goto(`${gw.url}/dashboard`);
    await expect.poll(() => page.locator('#login').isVisible()).toBe(true);

    expectingAuthFailure = true;
    await page.fill('#login-key', `fg_${randomBytes(32).toString('base64url')}`);
    await page.click('#login-submit');
    await expect
      .poll(() => page.locator('#login-error').textContent(), { timeout: 5000 })
      .toContain('not accepted');
    expectingAuthFailure = false;

    await page.fill('#login-key', admin);
    await page.click('#login-submit');
    await expect.poll(() => page.locator('#conn-text').textContent(), { timeout: 10_000 }).toBe('live');
    expect(await page.evaluate(() => sessionStorage.getItem('floodgate.adminKey'))).toBe(admin);

    const rendered = await page.evaluate(() => {
      const canvas = document.getElementById('throughput-chart') as HTMLCanvasElement;
      const chart = (
        window as unknown as { Chart: { getChart(c: HTMLCanvasElement): unknown } }
      ).Chart.getChart(canvas);
      return { chart: !!chart, width: canvas.width, height: canvas.height };
    });
    expect(rendered.chart).toBe(true);
    expect(rendered.width).toBeGreaterThan(300);
    expect(rendered.height).toBeGreaterThan(100);
    expect(await page.locator('#providers-empty').textContent()).toContain(
      'No providers yet — add one with POST /api/admin/providers',
    );
    expect(await page.locator('#adjustments').textContent()).toContain('No learned-limit adjustments yet');
    expect(await page.locator('#breakers').textContent()).toContain(
      'No route targets — define a route with POST /api/admin/routes',
    );
    // Spend: nothing relayed yet, both tables say so.
    const spendEmpty = page.locator('#spend [data-role="spend-empty"]');
    await expect.poll(() => spendEmpty.count(), { timeout: 5000 }).toBe(2);
    expect(await spendEmpty.first().textContent()).toContain(
      'No requests routed to a provider this month yet',
    );
  });

  it('sends traffic and sees the numbers change live', async () => {
    await expect.poll(() => statNumber('stat-http-total'), { timeout: 5000 }).toBeGreaterThan(0);
    const before = await statNumber('stat-http-total');
    for (let i = 0; i < 15; i++) expect((await fetch(`${gw.url}/health/live`)).status).toBe(200);
    await expect
      .poll(() => statNumber('stat-http-total'), { timeout: 5000 })
      .toBeGreaterThanOrEqual(before + 15);
    // The throughput line got a non-zero point.
    await expect
      .poll(
        () =>
          page.evaluate(() => {
            const c = (window as any).Chart.getChart(document.getElementById('throughput-chart'));
            return Math.max(0, ...(c.data.datasets[0].data as number[]));
          }),
        { timeout: 5000 },
      )
      .toBeGreaterThan(0);
  });

  it('a provider appears with its bucket gauge, queue bars and key table; screenshot at 1280×800', async () => {
    const provider = await getJson(`${gw.url}/api/admin/providers`, {
      method: 'POST',
      headers: bearer(admin),
      body: JSON.stringify({
        name: 'openai-demo',
        base_url: 'http://127.0.0.1:9/v1',
        models: ['gpt-demo'],
        rpm: 600,
      }),
    });
    expect(provider.status).toBe(201);
    demoProviderId = provider.body.id;
    for (const [label, extra] of [
      ['primary', {}],
      ['backup', { max_concurrent: 4, max_rpm: 120 }],
    ] as const) {
      const key = await getJson(`${gw.url}/api/admin/providers/${provider.body.id}/keys`, {
        method: 'POST',
        headers: bearer(admin),
        body: JSON.stringify({ label, key: `sk-demo-${randomBytes(8).toString('hex')}`, ...extra }),
      });
      expect(key.status).toBe(201);
    }
    const card = page.locator(`#provider-${provider.body.id}`);
    await expect.poll(() => card.isVisible(), { timeout: 5000 }).toBe(true);
    await expect.poll(() => card.locator('tr').count(), { timeout: 5000 }).toBe(3);
    const charts = await card.evaluate((el) =>
      [...el.querySelectorAll('canvas')].map((c) => (window as any).Chart.getChart(c)?.config.type),
    );
    expect(charts).toEqual(['doughnut', 'bar']);
    const table = await card.locator('table').textContent();
    expect(table).toContain('primary');
    expect(table).toContain('4 (fixed)');
    expect(table).toContain('(learned)');
    expect(await page.locator('#providers-empty').count()).toBe(0);

    // The key survives a reload (sessionStorage): no second prompt.
    await page.reload();
    await expect.poll(() => page.locator('#conn-text').textContent(), { timeout: 10_000 }).toBe('live');
    expect(await page.locator('#login').isVisible()).toBe(false);
    await expect.poll(() => card.locator('canvas').count(), { timeout: 5000 }).toBe(2);

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: SCREENSHOT });
    expect(statSync(SCREENSHOT).size).toBeGreaterThan(10_000);
    expect(problems).toEqual([]);
  });

  it('a route’s targets appear in the Breakers table; failures open one (badge, countdown), a forced one says so', async () => {
    const route = await getJson(`${gw.url}/api/admin/routes`, {
      method: 'POST',
      headers: bearer(admin),
      body: JSON.stringify({
        model: 'chat-demo',
        targets: [
          { provider_id: demoProviderId, model: 'gpt-demo', weight: 1, tier: 1 },
          { provider_id: demoProviderId, model: 'gpt-demo-2', weight: 1, tier: 2, breaker: 'open' },
        ],
      }),
    });
    expect(route.status, JSON.stringify(route.body)).toBe(201);
    const rows = page.locator('#breakers-table tr[data-route="chat-demo"]');
    await expect.poll(() => rows.count(), { timeout: 5000 }).toBe(2);
    const first = page.locator('#breakers-table tr[data-model="gpt-demo"]');
    expect(await first.locator('[data-role="breaker-state"]').textContent()).toBe('closed');
    expect(
      await page
        .locator('#breakers-table tr[data-model="gpt-demo-2"] [data-role="breaker-forced"]')
        .textContent(),
    ).toBe('forced open');

    const breaker = gw.app.get(BreakerService);
    for (let i = 0; i < 5; i++)
      breaker.report({ providerId: demoProviderId, model: 'gpt-demo' }, 'failure', false);
    await expect
      .poll(() => first.locator('[data-role="breaker-state"]').textContent(), { timeout: 5000 })
      .toBe('open');
    const text = await first.textContent();
    expect(text).toContain('openai-demo');
    expect(text).toMatch(/5\s*5 \/ 5\s*\d+ s/); // in a row, window failures / requests, countdown
    await page.locator('#breakers').screenshot({ path: 'test-results/dashboard-breakers.png' });
    expect(problems).toEqual([]);
  });
});

/** Prices that make a request cost cents, so the USD formatting shows (docs/spend.md "Cost of a request"). */
const PRICE = { input_per_mtok: 1000.5, output_per_mtok: 3000.25 };
const MICRO = { input: 1_000_500_000n, output: 3_000_250_000n };
const cost = (prompt: number, completion: number) =>
  Number((BigInt(prompt) * MICRO.input + BigInt(completion) * MICRO.output + 500_000n) / 1_000_000n);
/** The page's rule: cents from $1, 4 decimals from 1 cent, else micro-dollars. */
const usd = (micros: number) => {
  const n = micros / 1_000_000;
  const digits = n >= 1 ? 2 : n >= 0.01 ? 4 : 6;
  return '$' + n.toLocaleString('en-US', { minimumFractionDigits: digits, maximumFractionDigits: digits });
};

/**
 * The Spend panel in both modes (embedded PGlite; Postgres + Redis): a team member's priced requests show
 * under the team's name and the model, today and this month; a request without a team under
 * "no team"; a rollup row from earlier this month counts for the month only, last month's not at all.
 */
describe.each(MODES)('dashboard Spend panel (%s)', (mode) => {
  let fx: RelayFixture;
  let browser: Browser;
  const problems: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM} (see above)`);
    fx = await startRelay(mode, {
      env: { RATE_LIMIT_KEY_RPM: '100000', RATE_LIMIT_USER_RPM: '100000' },
      provider: { pricing: { 'gpt-4o-mini': PRICE } },
    });
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: [
        '--no-sandbox',
        '--headless',
        '--disable-gpu',
        '--disable-background-networking',
        '--no-first-run',
      ],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await fx?.close();
  });

  const chat = async (key: string) => {
    const res = await getJson(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(key),
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'price me' }] }),
    });
    expect(res.status, JSON.stringify(res.body)).toBe(200);
    return res.body.usage as { prompt_tokens: number; completion_tokens: number };
  };

  it('after priced requests by a team member, the panel shows the team and the model with their cost today and this month', async () => {
    const teamName = `spend-dash-${randomBytes(4).toString('hex')}`;
    const team = await getJson(`${fx.gw.url}/api/admin/teams`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({ name: teamName }),
    });
    expect(team.status, JSON.stringify(team.body)).toBe(201);
    const member = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const joined = await getJson(`${fx.gw.url}/api/admin/teams/${team.body.id}/members/${member.user.id}`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({ role: 'member' }),
    });
    expect(joined.status, JSON.stringify(joined.body)).toBe(201);

    const N = 4;
    let usage = { prompt_tokens: 0, completion_tokens: 0 };
    for (let i = 0; i < N; i++) usage = await chat(member.key);
    const each = cost(usage.prompt_tokens, usage.completion_tokens);
    const alone = await chat(fx.adminKey); // the bootstrap admin is in no team
    const aloneCost = cost(alone.prompt_tokens, alone.completion_tokens);
    expect(each).toBeGreaterThan(10_000); // at least a cent each: the 4-decimal format shows

    // Rollup rows written by hand: one earlier this month (month only), one last month (neither).
    const now = new Date();
    const dayStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), now.getUTCDate());
    const monthStart = Date.UTC(now.getUTCFullYear(), now.getUTCMonth(), 1);
    const earlier = dayStart > monthStart ? 1_234_567 : 0; // on the 1st there is no "earlier this month"
    const db = fx.gw.app.get(DataSource);
    const insert = (hour: number, micros: number) =>
      db.query(
        `INSERT INTO spend_rollup (hour, team_id, provider_id, model, requests, cost_micro_usd)
         VALUES ($1, $2, $3, 'gpt-4o-mini', 1, $4)`,
        [new Date(hour), team.body.id, fx.providerId, micros],
      );
    await insert(monthStart - 3_600_000, 99_000_000);
    if (earlier) await insert(monthStart, earlier);

    // The writer batches each second: wait until the spend API sees every request, then open the page.
    await pollUntil(
      async () => {
        const r = await getJson(`${fx.gw.url}/api/admin/spend?group_by=team`, {
          headers: bearer(fx.adminKey, false),
        });
        return (r.body.data as { requests: number }[]).reduce((t, x) => t + x.requests, 0) >= N + 1;
      },
      { timeoutMs: 15_000, what: 'the requests in the spend rollup' },
    );

    const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
    page.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    page.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    await page.goto(`${fx.gw.url}/dashboard`);
    await page.fill('#login-key', fx.adminKey);
    await page.click('#login-submit');
    await expect.poll(() => page.locator('#conn-text').textContent(), { timeout: 10_000 }).toBe('live');

    const teamRow = page.locator(`#spend-teams-table tr[data-name="${teamName}"]`);
    await expect.poll(() => teamRow.count(), { timeout: 10_000 }).toBe(1);
    const cells = async (row: typeof teamRow) =>
      (await row.locator('td').allTextContents()).map((t) => t.trim());
    expect(await cells(teamRow)).toEqual([
      teamName,
      String(N),
      usd(N * each),
      String(N + (earlier ? 1 : 0)),
      usd(N * each + earlier),
    ]);
    expect(await cells(page.locator('#spend-teams-table tr[data-name="no team"]'))).toEqual([
      'no team',
      '1',
      usd(aloneCost),
      '1',
      usd(aloneCost),
    ]);
    const month = N * each + aloneCost + earlier;
    expect(await cells(page.locator('#spend-models-table tr[data-name="gpt-4o-mini"]'))).toEqual([
      'gpt-4o-mini',
      String(N + 1),
      usd(N * each + aloneCost),
      String(N + 1 + (earlier ? 1 : 0)),
      usd(month),
    ]);
    // the exact amount on hover
    expect(await teamRow.locator('[data-role="cost-today"]').getAttribute('title')).toBe(
      `$${(N * each) / 1_000_000}`,
    );
    // The numbers come from the rollups, not from anyone's key or secret.
    const panel = (await page.locator('#spend').textContent()) ?? '';
    expect(panel).not.toContain(fx.adminKey);
    expect(panel).not.toContain(member.key);
    mkdirSync('test-results', { recursive: true });
    await page.locator('#spend').screenshot({ path: `test-results/dashboard-spend-${mode}.png` });
    expect(problems).toEqual([]);
    await page.close();
  });

  it('GET /api/admin/spend/summary: at most one rollup read per 30 s for every caller; viewer yes, user no', async () => {
    const viewer = await createUserWithKey(fx.gw, fx.adminKey, 'viewer');
    const user = await createUserWithKey(fx.gw, fx.adminKey, 'user');
    const reads = vi.spyOn(fx.gw.app.get(SpendRepository), 'summaryRows');
    const answers = await Promise.all(
      [viewer.key, fx.adminKey, viewer.key, fx.adminKey, viewer.key].map((key) =>
        getJson(`${fx.gw.url}/api/admin/spend/summary`, { headers: bearer(key, false) }),
      ),
    );
    for (const a of answers) expect(a.status, JSON.stringify(a.body)).toBe(200);
    expect(reads.mock.calls.length).toBeLessThanOrEqual(1);
    expect(new Set(answers.map((a) => a.body.generated_at)).size).toBe(1);
    expect(Object.keys(answers[0]!.body).sort()).toEqual(
      ['by_model', 'by_team', 'generated_at', 'month_from', 'today_from', 'total'].sort(),
    );
    reads.mockRestore();
    const denied = await getJson(`${fx.gw.url}/api/admin/spend/summary`, {
      headers: bearer(user.key, false),
    });
    expect(denied.status).toBe(403);
  });
});
