import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, type UserWithKey } from '../support/auth.js';
import { pollUntil } from '../support/cluster.js';
import { getJson } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';

/**
 * The dashboard's admin console in a real browser (Debian's chromium driven by playwright-core, as in
 * dashboard.e2e-spec.ts): an admin creates a client key for a user (the raw key shown once) that a
 * client then uses against the fake provider, revokes it (next call 401), edits a key's limits, models
 * and budget (the relay applies them at once), adds a provider and an
 * upstream key (its value never shown), toggles a key, creates and edits a route, edits a budget;
 * a viewer sees no write action; the request browser reads GET /api/admin/requests.
 */
describe('dashboard admin console in a browser', () => {
  let fx: RelayFixture;
  let browser: Browser;
  let page: Page;
  let member: UserWithKey;
  const problems: string[] = [];
  /** HTTP statuses the page is expected to get right now (Chrome logs every 4xx fetch as an error). */
  let expectedStatuses: number[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) {
      throw new Error(
        `Chromium is not installed at ${CHROMIUM}: the console browser test needs it. ` +
          'Install it with `apt-get install -y chromium` (Debian/Ubuntu; .ci/run does this in CI), ' +
          'or point CHROMIUM_PATH at a Chromium binary.',
      );
    }
    fx = await startRelay('embedded', {
      env: { RATE_LIMIT_KEY_RPM: '100000', RATE_LIMIT_USER_RPM: '100000' },
    });
    member = await createUserWithKey(fx.gw, fx.adminKey, 'user', { email: 'member@console.test' });
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
    page = await newPage();
  });
  afterAll(async () => {
    await browser?.close();
    await fx?.close();
  });

  async function newPage(): Promise<Page> {
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    p.on('console', (msg) => {
      if (msg.type() !== 'error') return;
      const status = /status of (\d{3})/.exec(msg.text());
      if (status && expectedStatuses.includes(Number(status[1]))) return;
      problems.push(`console: ${msg.text()}`);
    });
    p.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    p.on('dialog', (dialog) => void dialog.accept());
    return p;
  }

  async function login(p: Page, key: string): Promise<void> {
    await p.goto(`${fx.gw.url}/dashboard`);
    await p.fill('#login-key', key);
    await p.click('#login-submit');
    await expect.poll(() => p.locator('#conn-text').textContent(), { timeout: 10_000 }).toBe('live');
    await expect.poll(() => p.locator('#whoami').textContent(), { timeout: 5000 }).toContain('·');
  }

  const chat = (key: string, model = 'gpt-4o-mini') =>
    getJson(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(key),
      body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi from the console test' }] }),
    });

  it('an admin sees every tab; the Overview is the live view', async () => {
    await login(page, fx.adminKey);
    const visible = await page.locator('.tab:visible').allTextContents();
    expect(visible).toEqual(['Overview', 'Keys', 'Providers', 'Routes', 'Budgets', 'Requests']);
    expect(await page.locator('#tab-overview').isVisible()).toBe(true);
    expect(await page.locator('#tab-keys').isVisible()).toBe(false);
    expect(await page.locator('#whoami').textContent()).toContain('admin');
  });

  it('creates a client key for a user: the raw key is shown once, works for a relayed chat completion; revoked, the next call is 401', async () => {
    await page.click('.tab[data-tab="keys"]');
    await expect.poll(() => page.locator(`#key-user option[value="${member.user.id}"]`).count()).toBe(1);
    await page.selectOption('#key-user', member.user.id);
    await page.fill('#key-name', 'console-made');
    await page.fill('#key-rpm', '120');
    await page.fill('#key-budget-usd', '5');
    await page.selectOption('#key-budget-period', 'day');
    await page.click('#key-submit');

    const box = page.locator('#key-created');
    await expect.poll(() => box.isVisible(), { timeout: 5000 }).toBe(true);
    expect(await box.textContent()).toContain('shown only now');
    const raw = await page.inputValue('#key-created-value');
    expect(raw).toMatch(/^fg_[A-Za-z0-9_-]{43}$/);

    const row = page.locator('#keys-table tr[data-name="console-made"]');
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(1);
    const rowText = (await row.textContent())!;
    expect(rowText).toContain('member@console.test');
    expect(rowText).toContain('$5 / day');
    expect(rowText).not.toContain(raw);

    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard-console-keys.png', fullPage: true });

    const ok = await chat(raw);
    expect(ok.status, JSON.stringify(ok.body)).toBe(200);
    expect(ok.body.choices[0].message.content).toBe('Hello from the fake provider.');

    // Once hidden, the key is gone from the page for good.
    await page.click('#key-created-done');
    expect(await box.isVisible()).toBe(false);
    expect(await page.content()).not.toContain(raw);

    // The API's answer to a refused call is shown, with its field.
    expectedStatuses = [400];
    await page.selectOption('#key-user', member.user.id);
    await page.fill('#key-name', 'too-powerful');
    await page.selectOption('#key-role', 'admin');
    await page.click('#key-submit');
    await expect.poll(() => page.locator('#key-form-error').textContent(), { timeout: 5000 }).not.toBe('');
    const direct = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/users/${member.user.id}/keys`, {
      name: 'too-powerful',
      role: 'admin',
    });
    expect(direct.status).toBe(400);
    expect(await page.locator('#key-form-error').textContent()).toContain(direct.body.error.message);
    expectedStatuses = [];
    await page.selectOption('#key-role', '');

    await row.locator('[data-role="revoke"]').click();
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(0);
    const refused = await chat(raw);
    expect(refused.status).toBe(401);
    expect(refused.body.error.type).toBe('authentication_error');
    expect(problems).toEqual([]);
  });

  it("edits a key's limits, allowed models and budget in place (PATCH): the relay applies them at once; the key stays the same", async () => {
    const made = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/users/${member.user.id}/keys`, {
      name: 'console-edit',
      budget: { limit_usd: 5, period: 'day' },
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const raw = made.body.key as string;
    expect((await chat(raw, 'gpt-4o')).status).toBe(200);

    await page.click('.tab[data-tab="keys"]');
    const row = page.locator('#keys-table tr[data-name="console-edit"]');
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(1);
    expect(await page.locator('#tab-keys').textContent()).not.toContain('set when it is created');
    await row.locator('[data-role="key-edit"]').click();
    const editor = page.locator('#keys-table tr.key-editor');
    expect(await editor.locator('[data-field="limit_usd"]').inputValue()).toBe('5');

    // Client-side check first: a bad RPM never reaches the API.
    await editor.locator('[data-field="rpm"]').fill('0');
    await editor.locator('button[type="submit"]').click();
    expect(await page.locator('#keys-error').textContent()).toContain('(field: limits.rpm)');

    await editor.locator('[data-field="rpm"]').fill('1');
    await editor.locator('[data-field="allowed_models"]').fill('gpt-4o-mini');
    await editor.locator('[data-field="limit_usd"]').fill('7.5');
    await editor.locator('[data-field="period"]').selectOption('week');
    await editor.locator('button[type="submit"]').click();
    const edited = page.locator('#keys-table tr[data-name="console-edit"]');
    await expect.poll(() => edited.textContent(), { timeout: 5000 }).toContain('$7.5 / week');
    expect(await edited.textContent()).toContain('1 / ∞');
    expect(await page.locator('#keys-table tr.key-editor').count()).toBe(0);
    const keys = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/api-keys?user_id=${member.user.id}`);
    const saved = (keys.body.data as { id: string }[]).find((k) => k.id === made.body.id);
    expect(saved).toMatchObject({
      name: 'console-edit',
      limits: { rpm: 1, tpm: null },
      allowed_models: ['gpt-4o-mini'],
      budget: { limit_usd: 7.5, period: 'week' },
    });

    // The relay applies the change at once: another model is refused, rpm 1 allows one request.
    const other = await chat(raw, 'gpt-4o');
    expect(other.status).toBe(403);
    expect(other.body.error.code).toBe('model_not_allowed');
    expect((await chat(raw)).status).toBe(200);
    const limited = await chat(raw);
    expect(limited.status).toBe(429);
    expect(limited.body.error.param).toBe('key');

    // Removing the budget (empty amount) sends budget: null.
    await edited.locator('[data-role="key-edit"]').click();
    await page.locator('#keys-table tr.key-editor [data-field="limit_usd"]').fill('');
    await page.locator('#keys-table tr.key-editor button[type="submit"]').click();
    await expect
      .poll(() => page.locator('#keys-table tr[data-name="console-edit"]').textContent(), { timeout: 5000 })
      .toContain('none');
    const audit = await adminCall(fx.gw, fx.adminKey, 'GET', '/api/admin/audit?action=api_key.update');
    const rows = (audit.body.data as { target_id: string; changes: Record<string, unknown> }[]).filter(
      (a) => a.target_id === made.body.id,
    );
    expect(rows.map((a) => Object.keys(a.changes).sort())).toEqual([
      ['budget'],
      ['allowed_models', 'budget', 'limits'],
    ]);
    expect(await page.content()).not.toContain(raw);
    expect(problems).toEqual([]);
  });

  let uiProviderId = '';

  it('adds a provider and an upstream key (the value never appears in the page), toggles the key and the provider', async () => {
    await page.click('.tab[data-tab="providers"]');
    await expect
      .poll(() => page.locator('#providers-list .provider-card').count(), { timeout: 5000 })
      .toBe(1);

    // Client-side check first: a URL without a scheme never reaches the API.
    await page.fill('#provider-name', 'ui-made');
    await page.fill('#provider-url', 'not-a-url');
    await page.click('#provider-submit');
    expect(await page.locator('#provider-form-error').textContent()).toContain('base_url');

    await page.fill('#provider-url', fx.fake.baseUrl);
    await page.fill('#provider-models', 'gpt-4o, text-embedding-3-small');
    await page.fill('#provider-rpm', '600');
    await page.click('#provider-submit');
    const card = page.locator('.provider-card[data-name="ui-made"]');
    await expect.poll(() => card.count(), { timeout: 5000 }).toBe(1);
    expect(await card.textContent()).toContain('models: gpt-4o, text-embedding-3-small');
    const providers = await adminCall(fx.gw, fx.adminKey, 'GET', '/api/admin/providers');
    const made = (providers.body as { id: string; name: string; kind?: string; rpm: number }[]).find(
      (p) => p.name === 'ui-made',
    )!;
    expect(made.rpm).toBe(600);
    if ('kind' in made) expect(made.kind).toBe('openai');
    uiProviderId = made.id;

    // A duplicate name: the API refuses and the page says what it said.
    expectedStatuses = [409, 400];
    await page.fill('#provider-name', 'ui-made');
    await page.fill('#provider-url', fx.fake.baseUrl);
    await page.click('#provider-submit');
    await expect
      .poll(() => page.locator('#provider-form-error').textContent(), { timeout: 5000 })
      .not.toBe('');
    const dup = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/providers', {
      name: 'ui-made',
      base_url: fx.fake.baseUrl,
      models: [],
    });
    expect(dup.status).toBeGreaterThanOrEqual(400);
    expect(await page.locator('#provider-form-error').textContent()).toContain(dup.body.error.message);
    expectedStatuses = [];

    // kind: sent only when anthropic is picked. A gateway with providers' `kind` takes it; one without
    // refuses the unknown field, and the page shows that refusal naming the field.
    await page.fill('#provider-name', 'ui-anthropic');
    await page.fill('#provider-url', fx.fake.baseUrl);
    await page.selectOption('#provider-kind', 'anthropic');
    const supportsKind = 'kind' in made;
    if (!supportsKind) expectedStatuses = [400];
    await page.click('#provider-submit');
    if (supportsKind) {
      const anthropic = page.locator('.provider-card[data-name="ui-anthropic"]');
      await expect.poll(() => anthropic.count(), { timeout: 5000 }).toBe(1);
      expect(await anthropic.textContent()).toContain('anthropic');
    } else {
      await expect
        .poll(() => page.locator('#provider-form-error').textContent(), { timeout: 5000 })
        .toContain('(field: kind)');
      expectedStatuses = [];
    }

    const secret = `sk-ui-secret-${randomBytes(12).toString('hex')}`;
    const form = card.locator('[data-role="upstream-form"]');
    await form.locator('[data-field="label"]').fill('ui-key');
    await form.locator('[data-field="key"]').fill(secret);
    await form.locator('[data-field="max_rpm"]').fill('90');
    await form.locator('button[type="submit"]').click();
    const keyRow = card.locator('tr[data-label="ui-key"]');
    await expect.poll(() => keyRow.count(), { timeout: 5000 }).toBe(1);
    expect(await form.locator('[data-field="key"]').inputValue()).toBe('');
    expect(await page.content()).not.toContain(secret);
    expect(await keyRow.textContent()).not.toContain(secret.slice(0, 16));
    expect(await keyRow.locator('[data-role="key-state"]').textContent()).toBe('active');
    const keyId = (await keyRow.getAttribute('data-id'))!;

    await keyRow.locator('[data-role="key-toggle"]').click();
    await expect
      .poll(() => card.locator('tr[data-label="ui-key"] [data-role="key-state"]').textContent(), {
        timeout: 5000,
      })
      .toBe('disabled');
    const after = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/provider-keys/${keyId}`);
    expect(after.body.enabled).toBe(false);
    await card.locator('tr[data-label="ui-key"] [data-role="key-toggle"]').click();
    await expect
      .poll(() => card.locator('tr[data-label="ui-key"] [data-role="key-state"]').textContent(), {
        timeout: 5000,
      })
      .toBe('active');

    await card.locator('[data-role="provider-toggle"]').click();
    await expect
      .poll(
        () =>
          page.locator('.provider-card[data-name="ui-made"] [data-role="provider-enabled"]').textContent(),
        {
          timeout: 5000,
        },
      )
      .toBe('disabled');
    expect(
      (await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/providers/${uiProviderId}`)).body.enabled,
    ).toBe(false);

    // Delete the key (with confirmation): gone from the list and from the API.
    await page
      .locator('.provider-card[data-name="ui-made"] tr[data-label="ui-key"] [data-role="key-delete"]')
      .click();
    await expect
      .poll(() => page.locator('.provider-card[data-name="ui-made"] tr[data-label="ui-key"]').count(), {
        timeout: 5000,
      })
      .toBe(0);
    expect((await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/provider-keys/${keyId}`)).status).toBe(
      404,
    );
    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard-console-providers.png', fullPage: true });
    expect(problems).toEqual([]);
  });

  /**
   * Opens the Providers tab and waits until its fresh load is drawn (cards and their upstream keys):
   * a redraw replaces every card, so an editor opened on the previous drawing would vanish.
   */
  async function openProviders(p: Page): Promise<void> {
    // Via the Overview, which loads nothing: another tab's late load would race its own test.
    await p.click('.tab[data-tab="overview"]');
    await p.click('.tab[data-tab="providers"]');
    await expect
      .poll(() => p.locator('#providers-list[aria-busy="false"]').count(), { timeout: 5000 })
      .toBe(1);
  }

  /** The body of the next PATCH the page sends to a path ending with `suffix`. */
  const nextPatch = (suffix: string) =>
    page
      .waitForRequest((r) => r.method() === 'PATCH' && r.url().endsWith(suffix), { timeout: 5000 })
      .then((r) => r.postDataJSON() as Record<string, unknown>);

  it("edits a provider (pricing, timeout, a header) in its Edit form: only the changed fields are PATCHed, the API's GET shows them and a relayed request is priced with the new price", async () => {
    await openProviders(page);
    const card = page.locator(`#pcard-${fx.providerId}`);
    await expect.poll(() => card.count(), { timeout: 5000 }).toBe(1);
    await card.locator('[data-role="provider-edit"]').click();
    const form = card.locator('form.provider-editor');
    expect(await form.locator('[data-field="base_url"]').inputValue()).toBe(fx.fake.baseUrl);
    expect(await form.locator('[data-field="timeout_ms"]').inputValue()).toBe('5000');

    await form.locator('[data-role="pricing-add"]').click();
    const price = form.locator('[data-role="pricing"] tr.entry').last();
    await price.locator('[data-field="model"]').fill('gpt-4o-mini');
    await price.locator('[data-field="input_per_mtok"]').fill('2.5');
    await price.locator('[data-field="output_per_mtok"]').fill('10');
    await form.locator('[data-field="timeout_ms"]').fill('8000');
    await form.locator('[data-role="headers-add"]').click();
    const header = form.locator('[data-role="headers"] tr.entry').last();
    await header.locator('[data-field="header_name"]').fill('X-Console-Test');
    await header.locator('[data-field="header_value"]').fill('from-the-form');
    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard-console-provider-edit.png', fullPage: true });
    const sent = nextPatch(`/api/admin/providers/${fx.providerId}`);
    await form.locator('button[type="submit"]').click();
    expect(await sent).toEqual({
      timeout_ms: 8000,
      pricing: { 'gpt-4o-mini': { input_per_mtok: 2.5, output_per_mtok: 10 } },
      headers: { 'X-Console-Test': 'from-the-form' },
    });
    // The card is redrawn from the API: the editor is gone, the new values are shown.
    await expect
      .poll(() => page.locator(`#pcard-${fx.providerId} [data-role="provider-meta"]`).textContent(), {
        timeout: 5000,
      })
      .toContain('gpt-4o-mini $2.5 / $10');
    expect(await page.locator(`#pcard-${fx.providerId}`).textContent()).toContain('timeout 8000 ms');
    expect(await page.locator(`#pcard-${fx.providerId} form.provider-editor`).count()).toBe(0);
    await expect
      .poll(() => page.locator('#providers-list[aria-busy="false"]').count(), { timeout: 5000 })
      .toBe(1);
    const got = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/providers/${fx.providerId}`);
    expect(got.body).toMatchObject({
      timeout_ms: 8000,
      base_url: fx.fake.baseUrl,
      headers: { 'X-Console-Test': 'from-the-form' },
      pricing: { 'gpt-4o-mini': { input_per_mtok: 2.5, output_per_mtok: 10, cached_input_per_mtok: 2.5 } },
    });

    // Saving the form unchanged sends nothing.
    await page.locator(`#pcard-${fx.providerId} [data-role="provider-edit"]`).click();
    let patched = false;
    const spy = (r: { method(): string }) => {
      if (r.method() === 'PATCH') patched = true;
    };
    page.on('request', spy);
    await page.locator(`#pcard-${fx.providerId} form.provider-editor button[type="submit"]`).click();
    await expect
      .poll(() => page.locator(`#pcard-${fx.providerId} form.provider-editor`).count(), { timeout: 5000 })
      .toBe(0);
    page.off('request', spy);
    expect(patched).toBe(false);

    // A relayed request is priced with the new price (the request log's cost).
    const made = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/users/${member.user.id}/keys`, {
      name: 'console-priced',
    });
    expect(made.status).toBe(201);
    const probe = await getJson(`${fx.gw.url}/api/admin/requests?limit=1`, {
      headers: bearer(fx.adminKey, false),
    });
    expect((await chat(made.body.key as string)).status).toBe(200);
    if (probe.status !== 404) {
      let row: { prompt_tokens: number; completion_tokens: number; cost_usd: number | null } | undefined;
      await pollUntil(
        async () => {
          const r = await getJson(`${fx.gw.url}/api/admin/requests?key_id=${made.body.id}`, {
            headers: bearer(fx.adminKey, false),
          });
          row = r.body?.data?.[0];
          return row !== undefined;
        },
        { timeoutMs: 15_000, what: 'the priced request in the log' },
      );
      expect(row!.prompt_tokens).toBeGreaterThan(0);
      const micros = Math.round(
        (row!.prompt_tokens * 2_500_000 + row!.completion_tokens * 10_000_000) / 1_000_000,
      );
      expect(Math.round(row!.cost_usd! * 1_000_000)).toBe(micros);
    }
    expect(problems).toEqual([]);
  });

  it("edits an upstream key's limits and concurrency in its Edit form (PATCH, only what changed) and replaces its value without ever showing it", async () => {
    const made = await adminCall(fx.gw, fx.adminKey, 'POST', `/api/admin/providers/${fx.providerId}/keys`, {
      label: 'console-edit-key',
      key: 'sk-console-edit-original',
      enabled: false, // never leased by the other tests' requests
    });
    expect(made.status, JSON.stringify(made.body)).toBe(201);
    const keyId = made.body.id as string;
    await openProviders(page);
    const row = () => page.locator(`#pcard-${fx.providerId} tr[data-id="${keyId}"]`);
    const editor = () => page.locator(`#pcard-${fx.providerId} tr.upstream-editor[data-id="${keyId}"]`);
    await expect.poll(() => row().count(), { timeout: 5000 }).toBe(1);
    await row().locator('[data-role="key-edit"]').click();
    expect(await editor().locator('[data-field="max_concurrent"]').inputValue()).toBe('');
    expect(await editor().locator('[data-field="key"]').inputValue()).toBe('');

    const secret = `sk-console-replaced-${randomBytes(12).toString('hex')}`;
    await editor().locator('[data-field="priority"]').fill('3');
    await editor().locator('[data-field="max_rpm"]').fill('77');
    await editor().locator('[data-field="max_tpm"]').fill('5000');
    await editor().locator('[data-field="max_concurrent"]').fill('4');
    await editor().locator('[data-field="key"]').fill(secret);
    await page.screenshot({ path: 'test-results/dashboard-console-upstream-edit.png', fullPage: true });
    const sent = nextPatch(`/api/admin/provider-keys/${keyId}`);
    await editor().locator('button[type="submit"]').click();
    expect(await sent).toEqual({ priority: 3, max_rpm: 77, max_tpm: 5000, max_concurrent: 4, key: secret });
    await expect.poll(() => row().textContent(), { timeout: 5000 }).toContain('5000');
    expect(await editor().count()).toBe(0);
    const got = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/provider-keys/${keyId}`);
    expect(got.body).toMatchObject({
      priority: 3,
      max_rpm: 77,
      max_tpm: 5000,
      max_concurrent: 4,
      enabled: false,
    });
    expect(got.body.masked).not.toBe(made.body.masked);
    expect(await row().textContent()).toContain(got.body.masked);
    expect(await page.content()).not.toContain(secret);

    // Back to adaptive: an empty concurrency field sends max_concurrent: null, and nothing else.
    await row().locator('[data-role="key-edit"]').click();
    await editor().locator('[data-field="max_concurrent"]').fill('');
    const back = nextPatch(`/api/admin/provider-keys/${keyId}`);
    await editor().locator('button[type="submit"]').click();
    expect(await back).toEqual({ max_concurrent: null });
    await expect.poll(() => row().textContent(), { timeout: 5000 }).toContain('adaptive');
    const adaptive = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/adaptive/keys/${keyId}/stats`);
    expect(adaptive.status).toBe(200);
    expect(
      (await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/provider-keys/${keyId}`)).body.max_concurrent,
    ).toBeNull();
    expect(await page.content()).not.toContain(secret);
    await adminCall(fx.gw, fx.adminKey, 'DELETE', `/api/admin/provider-keys/${keyId}`);
    expect(problems).toEqual([]);
  });

  it('a value the API refuses: its 4xx message naming the field is shown in the form, and nothing changes', async () => {
    await openProviders(page);
    const card = page.locator(`#pcard-${fx.providerId}`);
    await expect.poll(() => card.count(), { timeout: 5000 }).toBe(1);
    const before = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/providers/${fx.providerId}`);

    expectedStatuses = [400];
    await card.locator('[data-role="provider-edit"]').click();
    const form = card.locator('form.provider-editor');
    await form.locator('[data-field="timeout_ms"]').fill('9000');
    const price = form.locator('[data-role="pricing"] tr.entry').first();
    await price.locator('[data-field="input_per_mtok"]').fill('-1');
    await form.locator('button[type="submit"]').click();
    const error = card.locator('[data-role="provider-edit-error"]');
    await expect
      .poll(() => error.textContent(), { timeout: 5000 })
      .toContain('(field: pricing.gpt-4o-mini.input_per_mtok)');
    const direct = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/providers/${fx.providerId}`, {
      pricing: { 'gpt-4o-mini': { input_per_mtok: -1, output_per_mtok: 10 } },
    });
    expect(direct.status).toBe(400);
    expect(await error.textContent()).toContain(direct.body.error.message);
    expect(await form.count()).toBe(1); // the form stays open with what was typed
    const after = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/providers/${fx.providerId}`);
    expect(after.body).toEqual(before.body);
    await form.locator('button', { hasText: 'Cancel' }).click();
    expect(await error.textContent()).toBe('');

    // An upstream key's concurrency above the API's maximum.
    const keyId = fx.keyIds['sk-fake-1']!;
    const keyBefore = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/provider-keys/${keyId}`);
    await card.locator(`tr[data-id="${keyId}"] [data-role="key-edit"]`).click();
    const editor = card.locator(`tr.upstream-editor[data-id="${keyId}"]`);
    await editor.locator('[data-field="max_concurrent"]').fill('20000');
    await editor.locator('button[type="submit"]').click();
    const keyError = card.locator('[data-role="upstream-error"]');
    await expect.poll(() => keyError.textContent(), { timeout: 5000 }).toContain('(field: max_concurrent)');
    expect(await keyError.textContent()).toContain('max_concurrent');
    const keyAfter = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/provider-keys/${keyId}`);
    expect(keyAfter.body.max_concurrent).toBe(keyBefore.body.max_concurrent);
    expect(keyAfter.body.updated_at).toBe(keyBefore.body.updated_at);
    await editor.locator('button', { hasText: 'Cancel' }).click();
    expectedStatuses = [];
    expect(problems).toEqual([]);
  });

  it('creates a route the relay then follows, edits it and deletes it', async () => {
    await page.click('.tab[data-tab="routes"]');
    await expect.poll(() => page.locator('#route-targets tr').count(), { timeout: 5000 }).toBe(1);
    await page.fill('#route-model', 'console-alias');
    await page.fill('#route-attempts', '2');
    const target = page.locator('#route-targets tr').first();
    await target.locator('[data-field="provider_id"]').selectOption(fx.providerId);
    await target.locator('[data-field="model"]').fill('gpt-4o-mini');
    await target.locator('[data-field="weight"]').fill('3');
    await target.locator('[data-field="tier"]').fill('1');
    await page.click('#route-submit');
    const row = page.locator('#routes-table tr[data-model="console-alias"]');
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(1);
    expect(await row.textContent()).toContain('fake / gpt-4o-mini · w3 · tier 1');

    const routed = await chat(fx.adminKey, 'console-alias');
    expect(routed.status, JSON.stringify(routed.body)).toBe(200);
    expect(routed.headers.get('x-floodgate-route-target')).toBe('fake/gpt-4o-mini');

    // Edit: a second target and 3 attempts (PATCH replaces the targets).
    await row.locator('[data-role="route-edit"]').click();
    expect(await page.locator('#route-submit').textContent()).toBe('Save route');
    await page.click('#route-add-target');
    const second = page.locator('#route-targets tr').nth(1);
    await second.locator('[data-field="provider_id"]').selectOption(fx.providerId);
    await second.locator('[data-field="model"]').fill('gpt-4o');
    await second.locator('[data-field="tier"]').fill('2');
    await page.fill('#route-attempts', '3');
    await page.click('#route-submit');
    await expect
      .poll(() => page.locator('#routes-table tr[data-model="console-alias"]').textContent(), {
        timeout: 5000,
      })
      .toContain('fake / gpt-4o · w1 · tier 2');
    const routes = await adminCall(fx.gw, fx.adminKey, 'GET', '/api/admin/routes');
    const saved = (routes.body as { model: string; max_attempts: number; targets: unknown[] }[]).find(
      (r) => r.model === 'console-alias',
    )!;
    expect(saved.max_attempts).toBe(3);
    expect(saved.targets).toHaveLength(2);

    await page.locator('#routes-table tr[data-model="console-alias"] [data-role="route-delete"]').click();
    await expect
      .poll(() => page.locator('#routes-table tr[data-model="console-alias"]').count(), { timeout: 5000 })
      .toBe(0);
    expect(problems).toEqual([]);
  });

  it("edits a user's budget (and removes it) and a team's", async () => {
    const team = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', { name: 'console-team' });
    expect(team.status, JSON.stringify(team.body)).toBe(201);
    await page.click('.tab[data-tab="budgets"]');
    const row = page.locator(`#budget-users-table tr[data-id="${member.user.id}"]`);
    await expect.poll(() => row.count(), { timeout: 5000 }).toBe(1);
    await row.locator('[data-role="budget-edit"]').click();
    const editor = page.locator('#budget-users-table tr.budget-editor');
    await editor.locator('[data-field="limit_usd"]').fill('12.5');
    await editor.locator('[data-field="period"]').selectOption('week');
    await editor.locator('button[type="submit"]').click();
    await expect
      .poll(
        () =>
          page
            .locator(`#budget-users-table tr[data-id="${member.user.id}"] [data-role="budget"]`)
            .textContent(),
        { timeout: 5000 },
      )
      .toBe('$12.5 / week');
    const user = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/users/${member.user.id}`);
    expect(user.body.budget).toEqual({ limit_usd: 12.5, period: 'week' });

    await page
      .locator(`#budget-users-table tr[data-id="${member.user.id}"] [data-role="budget-edit"]`)
      .click();
    await page.locator('#budget-users-table tr.budget-editor button.danger').click();
    await expect
      .poll(
        () =>
          page
            .locator(`#budget-users-table tr[data-id="${member.user.id}"] [data-role="budget"]`)
            .textContent(),
        { timeout: 5000 },
      )
      .toBe('none');

    const teamRow = page.locator(`#budget-teams-table tr[data-id="${team.body.id}"]`);
    await expect.poll(() => teamRow.count(), { timeout: 5000 }).toBe(1);
    await teamRow.locator('[data-role="budget-edit"]').click();
    const teamEditor = page.locator('#budget-teams-table tr.budget-editor');
    // Client-side check: no amount, no call.
    await teamEditor.locator('button[type="submit"]').click();
    expect(await page.locator('#budget-teams-error').textContent()).toContain('(field: budget.limit_usd)');
    await teamEditor.locator('[data-field="limit_usd"]').fill('250');
    await teamEditor.locator('button[type="submit"]').click();
    await expect
      .poll(
        () =>
          page
            .locator(`#budget-teams-table tr[data-id="${team.body.id}"] [data-role="budget"]`)
            .textContent(),
        { timeout: 5000 },
      )
      .toBe('$250 / month');
    const saved = await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/teams/${team.body.id}`);
    expect(saved.body.budget).toMatchObject({ limit_usd: 250, period: 'month' });
    expect(problems).toEqual([]);
  });

  it('a viewer-role login sees the providers and routes but no write action, and no Keys or Budgets tab', async () => {
    const viewer = await createUserWithKey(fx.gw, fx.adminKey, 'viewer');
    const p = await newPage();
    await login(p, viewer.key);
    expect(await p.locator('#whoami').textContent()).toContain('viewer');
    expect(await p.locator('.tab:visible').allTextContents()).toEqual([
      'Overview',
      'Providers',
      'Routes',
      'Requests',
    ]);
    await p.click('.tab[data-tab="providers"]');
    await expect
      .poll(() => p.locator('#providers-list .provider-card').count(), { timeout: 5000 })
      .toBeGreaterThanOrEqual(2);
    expect(await p.locator('#provider-form').isVisible()).toBe(false);
    expect(await p.locator('#providers-list button:visible').count()).toBe(0);
    expect(await p.locator('#providers-list form:visible').count()).toBe(0);
    expect(await p.locator('#providers-list').textContent()).toContain(
      'Your role may not read upstream keys',
    );
    await p.click('.tab[data-tab="routes"]');
    expect(await p.locator('#route-form').isVisible()).toBe(false);
    // Nothing with a write action is visible anywhere on the page.
    expect(await p.locator('[data-write]:visible').count()).toBe(0);
    await p.close();
    expect(problems).toEqual([]);
  });

  it('a viewer gets no Edit button on a provider (an admin does, on providers and upstream keys)', async () => {
    await openProviders(page);
    await expect
      .poll(() => page.locator('#providers-list [data-role="provider-edit"]:visible').count(), {
        timeout: 5000,
      })
      .toBeGreaterThanOrEqual(2);
    await expect
      .poll(() => page.locator(`#pcard-${fx.providerId} [data-role="key-edit"]:visible`).count(), {
        timeout: 5000,
      })
      .toBeGreaterThanOrEqual(1);

    const viewer = await createUserWithKey(fx.gw, fx.adminKey, 'viewer');
    const p = await newPage();
    await login(p, viewer.key);
    await openProviders(p);
    await expect
      .poll(() => p.locator('#providers-list .provider-card').count(), { timeout: 5000 })
      .toBeGreaterThanOrEqual(2);
    // The buttons are there, hidden (GET /api/me: no providers write); no key rows, no editors.
    expect(await p.locator('#providers-list [data-role="provider-edit"]').count()).toBeGreaterThanOrEqual(2);
    expect(await p.locator('#providers-list [data-role="provider-edit"]:visible').count()).toBe(0);
    expect(await p.locator('#providers-list [data-role="key-edit"]:visible').count()).toBe(0);
    expect(
      await p.locator('#providers-list form.provider-editor, #providers-list tr.upstream-editor').count(),
    ).toBe(0);
    // What it may read is shown: pricing and header names.
    expect(await p.locator(`#pcard-${fx.providerId} [data-role="provider-meta"]`).textContent()).toContain(
      'gpt-4o-mini $2.5 / $10',
    );
    await p.close();
    expect(problems).toEqual([]);
  });

  it("a team_admin (developer role) gets the Keys tab for its team's keys: lists, creates, edits and revokes them only", async () => {
    const team = await adminCall(fx.gw, fx.adminKey, 'POST', '/api/admin/teams', {
      name: 'console-team-admin',
    });
    expect(team.status).toBe(201);
    const lead = await createUserWithKey(fx.gw, fx.adminKey, 'developer', { email: 'lead@console.test' });
    const mate = await createUserWithKey(fx.gw, fx.adminKey, 'user', { email: 'mate@console.test' });
    const outsider = await createUserWithKey(fx.gw, fx.adminKey, 'user', { email: 'outsider@console.test' });
    for (const [u, role] of [
      [lead, 'team_admin'],
      [mate, 'member'],
    ] as const) {
      const joined = await adminCall(
        fx.gw,
        fx.adminKey,
        'POST',
        `/api/admin/teams/${team.body.id}/members/${u.user.id}`,
        {
          role,
        },
      );
      expect(joined.status).toBe(201);
    }
    const p = await newPage();
    await login(p, lead.key);
    expect(await p.locator('#whoami').textContent()).toContain('developer');
    expect(await p.locator('.tab:visible').allTextContents()).toContain('Keys');
    await p.click('.tab[data-tab="keys"]');
    const rows = p.locator('#keys-table tr[data-id]');
    await expect.poll(() => rows.count(), { timeout: 5000 }).toBe(2);
    const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-id')));
    expect(ids.sort()).toEqual([lead.keyId, mate.keyId].sort());
    expect(ids).not.toContain(outsider.keyId);
    expect(await p.locator('#keys-scope').textContent()).toContain('team_admin');
    expect(await p.locator('#key-capture').isVisible()).toBe(false);
    // the owner list is the team's members (a team_admin may not list users)
    await expect.poll(() => p.locator('#key-user option').count(), { timeout: 5000 }).toBe(2);
    expect(await p.locator('#key-user').textContent()).not.toContain('outsider@console.test');

    await p.selectOption('#key-user', mate.user.id);
    await p.fill('#key-name', 'team-made');
    await p.click('#key-submit');
    await expect.poll(() => p.locator('#key-created').isVisible(), { timeout: 5000 }).toBe(true);
    const made = p.locator('#keys-table tr[data-name="team-made"]');
    await expect.poll(() => made.count(), { timeout: 5000 }).toBe(1);
    const madeId = (await made.getAttribute('data-id'))!;
    await p.click('#key-created-done');

    await made.locator('[data-role="key-edit"]').click();
    const editor = p.locator('#keys-table tr.key-editor');
    await editor.locator('[data-field="rpm"]').fill('7');
    await editor.locator('button[type="submit"]').click();
    await expect.poll(() => made.textContent(), { timeout: 5000 }).toContain('7 / ∞');
    await made.locator('[data-role="revoke"]').click();
    await expect.poll(() => made.count(), { timeout: 5000 }).toBe(0);
    const saved = await adminCall(
      fx.gw,
      fx.adminKey,
      'GET',
      `/api/admin/api-keys?user_id=${mate.user.id}&include_revoked=true`,
    );
    expect((saved.body.data as { id: string }[]).find((k) => k.id === madeId)).toMatchObject({
      owner_id: mate.user.id,
      limits: { rpm: 7, tpm: null },
      revoked_at: expect.any(String),
    });
    await p.close();
    expect(problems).toEqual([]);
  });

  it('"Forget key" drops the console: tabs gone, nothing read with the key left in the page', async () => {
    await page.click('.tab[data-tab="keys"]');
    await expect
      .poll(() => page.locator('#keys-table tr[data-id]').count(), { timeout: 5000 })
      .toBeGreaterThan(0);
    await page.click('#forget-key');
    await expect.poll(() => page.locator('#login').isVisible()).toBe(true);
    expect(await page.locator('.tab[data-tab="keys"]').isHidden()).toBe(true);
    expect(await page.locator('#keys-list').textContent()).toBe('');
    expect(await page.locator('#providers-list').textContent()).toBe('');
    expect(await page.locator('#key-user option').count()).toBe(0);
    expect(await page.content()).not.toContain('member@console.test');
    await login(page, fx.adminKey);
    expect(problems).toEqual([]);
  });

  it('the request browser lists GET /api/admin/requests with filters, loads more by cursor, opens a detail', async (ctx) => {
    const probe = await getJson(`${fx.gw.url}/api/admin/requests?limit=1`, {
      headers: bearer(fx.adminKey, false),
    });
    if (probe.status === 404) {
      // The request log API is being built on another branch; the page says so meanwhile.
      expectedStatuses = [404];
      await page.click('.tab[data-tab="requests"]');
      await expect
        .poll(() => page.locator('#requests-error').textContent(), { timeout: 5000 })
        .toContain('not available on this gateway');
      expectedStatuses = [];
      ctx.skip('GET /api/admin/requests answers 404 on this gateway: the request log API is not merged yet');
      return;
    }
    for (let i = 0; i < 12; i++) expect((await chat(fx.adminKey)).status).toBe(200);
    // The request log is written in batches: wait until the API has them all.
    await pollUntil(
      async () => {
        const r = await getJson(`${fx.gw.url}/api/admin/requests?model=gpt-4o-mini&limit=500`, {
          headers: bearer(fx.adminKey, false),
        });
        return r.status === 200 && (r.body.data as unknown[]).length >= 13;
      },
      { timeoutMs: 15_000, what: 'the chat completions in the request log' },
    );
    await page.click('.tab[data-tab="requests"]');
    await page.fill('#rq-model', 'gpt-4o-mini');
    await page.selectOption('#rq-limit', '10');
    await page.click('#rq-submit');
    const rows = page.locator('#requests-table tr[data-id]');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(10);
    expect(await page.locator('#rq-more').isVisible()).toBe(true);
    await page.click('#rq-more');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBeGreaterThanOrEqual(13);
    const ids = await rows.evaluateAll((trs) => trs.map((tr) => tr.getAttribute('data-id')));
    expect(new Set(ids).size).toBe(ids.length); // the cursor's page follows, no row twice
    for (const text of await rows.allTextContents()) expect(text).toContain('gpt-4o-mini');
    expect(await rows.first().textContent()).toContain('fake');

    // A filter the API refuses: its message and field are shown.
    expectedStatuses = [400];
    await page.fill('#rq-status', 'teapot');
    await page.click('#rq-submit');
    await expect
      .poll(() => page.locator('#requests-error').textContent(), { timeout: 5000 })
      .toContain('(field: status)');
    expectedStatuses = [];
    await page.fill('#rq-status', '200');
    await page.click('#rq-submit');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(10);

    // The endpoint column and filter: the chats say chat; an embeddings request is found by its endpoint.
    expect(await page.locator('#requests-table th').allTextContents()).toContain('endpoint');
    const endpoints = await rows.evaluateAll((trs) => trs.map((tr) => tr.children[1]?.textContent));
    expect(new Set(endpoints)).toEqual(new Set(['chat']));
    const emb = await getJson(`${fx.gw.url}/v1/embeddings`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({ model: 'gpt-4o-mini', input: 'hi from the console test' }),
    });
    expect(emb.status).toBe(200);
    await pollUntil(
      async () =>
        (
          await getJson(`${fx.gw.url}/api/admin/requests?endpoint=embeddings`, {
            headers: bearer(fx.adminKey, false),
          })
        ).body.data.length === 1,
      { timeoutMs: 15_000, what: 'the embeddings request in the log' },
    );
    await page.selectOption('#rq-endpoint', 'embeddings');
    await page.click('#rq-submit');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(1);
    expect(await rows.first().evaluate((tr) => tr.children[1]?.textContent)).toBe('embeddings');
    await page.selectOption('#rq-endpoint', '');
    await page.click('#rq-submit');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(10);

    await rows.first().click();
    const detail = page.locator('#request-detail');
    await expect.poll(() => detail.isVisible(), { timeout: 5000 }).toBe(true);
    const id = (await rows.first().getAttribute('data-id'))!;
    await expect.poll(() => detail.textContent(), { timeout: 5000 }).toContain(id);
    // "Loading request <id>…" shows the id too: wait for the loaded detail, not just the id
    await expect.poll(() => detail.textContent(), { timeout: 10_000 }).toContain('Attempts (1)');
    expect(await page.locator('#request-attempts tr').count()).toBe(2);
    mkdirSync('test-results', { recursive: true });
    await page.screenshot({ path: 'test-results/dashboard-console-requests.png', fullPage: true });

    // A key made in the console with body capture: filter by that key, the detail shows the captured body.
    await page.click('.tab[data-tab="keys"]');
    await expect.poll(() => page.locator(`#key-user option[value="${member.user.id}"]`).count()).toBe(1);
    await page.selectOption('#key-user', member.user.id);
    await page.fill('#key-name', 'captured');
    await page.check('#key-capture');
    await page.click('#key-submit');
    await expect.poll(() => page.locator('#key-created').isVisible(), { timeout: 5000 }).toBe(true);
    const raw = await page.inputValue('#key-created-value');
    const keyId = (await page.locator('#keys-table tr[data-name="captured"]').getAttribute('data-id'))!;
    await page.click('#key-created-done');
    expect((await chat(raw)).status).toBe(200);
    await pollUntil(
      async () =>
        (
          await getJson(`${fx.gw.url}/api/admin/requests?key_id=${keyId}`, {
            headers: bearer(fx.adminKey, false),
          })
        ).body.data.length === 1,
      { timeoutMs: 15_000, what: 'the captured request in the log' },
    );
    await page.click('.tab[data-tab="requests"]');
    await page.fill('#rq-key', keyId);
    await page.click('#rq-submit');
    await expect.poll(() => rows.count(), { timeout: 10_000 }).toBe(1);
    await rows.first().click();
    await expect
      .poll(() => detail.locator('pre').first().textContent(), { timeout: 5000 })
      .toContain('hi from the console test');
    expect(await detail.textContent()).not.toContain(raw);
    expect(problems).toEqual([]);
  });
});
