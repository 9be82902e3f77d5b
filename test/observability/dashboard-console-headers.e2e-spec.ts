import { existsSync } from 'node:fs';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey } from '../support/auth.js';
import { getJson } from '../support/gateway.js';
import { adminCall, startRelay, type RelayFixture } from '../support/relay.js';

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const SECRET = 'pk-live-consoleSECRETvalue9876wxyz';
const PREVIEW = 'pk-…wxyz';

/**
 * Provider header values in the admin console (docs/console.md, docs/key-pool.md "Extra upstream
 * headers"): an admin edits a provider with the values in clear and a placeholder is never saved; a
 * role that may not edit providers never holds a value, not even in the (hidden) editor.
 */
describe('dashboard console: provider header values', () => {
  let fx: RelayFixture;
  let browser: Browser;
  const problems: string[] = [];

  beforeAll(async () => {
    if (!existsSync(CHROMIUM)) throw new Error(`Chromium is not installed at ${CHROMIUM} (CHROMIUM_PATH)`);
    fx = await startRelay('embedded', { provider: { headers: { 'X-Portkey-Config': SECRET } } });
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

  async function loggedIn(key: string): Promise<Page> {
    const p = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    p.on('console', (msg) => {
      if (msg.type() === 'error') problems.push(`console: ${msg.text()}`);
    });
    p.on('pageerror', (err) => problems.push(`page error: ${err.message}`));
    await p.goto(`${fx.gw.url}/dashboard`);
    await p.fill('#login-key', key);
    await p.click('#login-submit');
    await expect.poll(() => p.locator('#conn-text').textContent(), { timeout: 10_000 }).toBe('live');
    await p.click('.tab[data-tab="providers"]');
    await expect.poll(() => p.locator(`#pcard-${fx.providerId}`).count(), { timeout: 5000 }).toBe(1);
    await expect
      .poll(() => p.locator('#providers-list[aria-busy="false"]').count(), { timeout: 5000 })
      .toBe(1);
    return p;
  }

  const stored = async () =>
    (await adminCall(fx.gw, fx.adminKey, 'GET', `/api/admin/providers/${fx.providerId}`)).body.headers;

  it('an admin edits with the value in clear; another field alone is saved without touching the headers', async () => {
    const page = await loggedIn(fx.adminKey);
    const card = page.locator(`#pcard-${fx.providerId}`);
    await card.locator('[data-role="provider-edit"]').click();
    const form = card.locator('form.provider-editor');
    const row = form.locator('[data-role="headers"] tr.entry').first();
    expect(await row.locator('[data-field="header_value"]').inputValue()).toBe(SECRET);
    await form.locator('[data-field="timeout_ms"]').fill('7000');
    const sent = page
      .waitForRequest(
        (r) => r.method() === 'PATCH' && r.url().endsWith(`/api/admin/providers/${fx.providerId}`),
      )
      .then((r) => r.postDataJSON() as Record<string, unknown>);
    await form.locator('button[type="submit"]').click();
    expect(await sent).toEqual({ timeout_ms: 7000 });
    await expect.poll(() => card.locator('form.provider-editor').count(), { timeout: 5000 }).toBe(0);
    expect(await stored()).toEqual({ 'X-Portkey-Config': SECRET });
    // The relay still sends the real value upstream.
    const chat = await getJson(`${fx.gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(fx.adminKey),
      body: JSON.stringify({ model: fx.fake.models[0], messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(chat.status).toBe(200);
    expect(fx.fake.requests.at(-1)!.headers['x-portkey-config']).toBe(SECRET);
    await page.close();
    expect(problems).toEqual([]);
  });

  it('a redacted preview typed or pasted as a value is refused in the form: nothing is sent, the value stays', async () => {
    const page = await loggedIn(fx.adminKey);
    const card = page.locator(`#pcard-${fx.providerId}`);
    await expect
      .poll(() => card.locator('[data-role="provider-edit"]:visible').count(), { timeout: 5000 })
      .toBe(1);
    await card.locator('[data-role="provider-edit"]').click();
    const form = card.locator('form.provider-editor');
    await form
      .locator('[data-role="headers"] tr.entry')
      .first()
      .locator('[data-field="header_value"]')
      .fill(PREVIEW);
    let patched = false;
    page.on('request', (r) => {
      if (r.method() === 'PATCH') patched = true;
    });
    await form.locator('button[type="submit"]').click();
    await expect
      .poll(
        () => card.locator('.provider-editor .error, [data-role="provider-edit-error"]').allTextContents(),
        {
          timeout: 5000,
        },
      )
      .toContainEqual(expect.stringContaining('redacted preview'));
    expect(patched).toBe(false);
    expect(await stored()).toEqual({ 'X-Portkey-Config': SECRET });
    await page.close();
    expect(problems).toEqual([]);
  });

  it('a viewer never holds the value: the card names the header, even the hidden editor shows only the preview', async () => {
    // The value as the admin set it (independent of the tests above).
    const set = await adminCall(fx.gw, fx.adminKey, 'PATCH', `/api/admin/providers/${fx.providerId}`, {
      headers: { 'X-Portkey-Config': SECRET },
    });
    expect(set.status).toBe(200);
    const viewer = await createUserWithKey(fx.gw, fx.adminKey, 'viewer');
    const page = await loggedIn(viewer.key);
    const card = page.locator(`#pcard-${fx.providerId}`);
    expect(await card.locator('[data-role="provider-meta"]').textContent()).toContain(
      'headers: X-Portkey-Config',
    );
    // The Edit button is hidden for a viewer; opened anyway (a script, devtools), it has only the preview.
    await card.locator('[data-role="provider-edit"]').dispatchEvent('click');
    const value = card.locator(
      'form.provider-editor [data-role="headers"] tr.entry [data-field="header_value"]',
    );
    await expect.poll(() => value.count(), { timeout: 5000 }).toBe(1);
    expect(await value.inputValue()).toBe(PREVIEW);
    expect(await page.content()).not.toContain('consoleSECRET');
    const inMemory = await page.evaluate(
      (k) =>
        fetch('/api/admin/providers', { headers: { authorization: `Bearer ${k}` } }).then((r) => r.text()),
      viewer.key,
    );
    expect(inMemory).not.toContain('consoleSECRET');
    await page.close();
    expect(problems).toEqual([]);
  });
});
