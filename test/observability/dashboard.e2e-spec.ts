import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, statSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BreakerService } from '../../src/routing/services/breaker.service.js';
import { bearer } from '../support/auth.js';
import { getJson, startGateway, type TestGateway } from '../support/gateway.js';

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
