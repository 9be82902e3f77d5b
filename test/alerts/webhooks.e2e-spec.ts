import { createHmac, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AlertsService } from '../../src/alerts/services/alerts.service.js';
import { createApp } from '../../src/app/create-app.js';
import { loadConfig } from '../../src/config/app-config.js';
import { BreakerService } from '../../src/routing/services/breaker.service.js';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import {
  getJson,
  isolatedEnv,
  MODES,
  startGateway,
  startGateways,
  type Mode,
  type TestGateway,
} from '../support/gateway.js';
import { adminCall, startRelay } from '../support/relay.js';
import { Receiver } from './receiver.js';

/** Checks `x-floodgate-signature` the way docs/alerts.md tells receivers to (HMAC over the raw bytes). */
function signatureOk(secret: string, raw: Buffer, header: unknown): boolean {
  return header === `sha256=${createHmac('sha256', secret).update(raw).digest('hex')}`;
}

async function waitUntil<T>(
  what: string,
  fn: () => Promise<T | null | undefined | false>,
  timeoutMs = 30_000,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const SECRET = 'test-signing-secret-0123456789';

/** A webhook's deliveries page (fails the test on anything but 200). */
async function deliveriesOf(gw: { url: string }, key: string, id: string, query = '') {
  const r = await getJson(`${gw.url}/api/admin/webhooks/${id}/deliveries${query}`, {
    headers: bearer(key, false),
  });
  if (r.status !== 200) throw new Error(`deliveries: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as { data: any[]; next_cursor: string | null };
}

/** DELETE without a body (no content-type: an empty JSON body is a 400). */
function del(gw: { url: string }, key: string, path: string) {
  return getJson(`${gw.url}${path}`, { method: 'DELETE', headers: bearer(key, false) });
}

describe.each(MODES)('webhooks admin API (%s)', (mode: Mode) => {
  let gw: TestGateway;
  const admin = newApiKey();

  beforeAll(async () => {
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: admin });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('creates (secret generated and shown once, or write-only), lists, gets and deletes, audited', async () => {
    const gen = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
      url: 'http://127.0.0.1:9/hook?team=a',
      events: ['key.cooling', 'breaker.opened', 'key.cooling'],
    });
    expect(gen.status).toBe(201);
    expect(gen.body).toMatchObject({
      url: 'http://127.0.0.1:9/hook?team=a',
      events: ['key.cooling', 'breaker.opened'],
      enabled: true,
    });
    expect(gen.body.secret).toMatch(/^whsec_[A-Za-z0-9_-]{43}$/);
    expect(gen.body.secret_hint).toBe(`whsec_…${gen.body.secret.slice(-4)}`);

    const own = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
      url: 'http://127.0.0.1:9/other',
      events: ['*'],
      secret: SECRET,
      enabled: false,
    });
    expect(own.status).toBe(201);
    expect(own.body.secret).toBeUndefined();
    expect(own.body).toMatchObject({ events: ['*'], enabled: false, secret_hint: '…6789' });

    const list = await adminCall(gw, admin, 'GET', '/api/admin/webhooks');
    expect(list.status).toBe(200);
    expect(list.body.map((w: { id: string }) => w.id)).toEqual([gen.body.id, own.body.id]);
    expect(JSON.stringify(list.body)).not.toContain(gen.body.secret);
    expect(JSON.stringify(list.body)).not.toContain(SECRET);

    const one = await adminCall(gw, admin, 'GET', `/api/admin/webhooks/${gen.body.id}`);
    expect(one.status).toBe(200);
    expect(one.body.secret).toBeUndefined();

    // sealed at rest: neither secret appears in the table
    const rows = (await gw.app.get(DataSource).query(`SELECT * FROM webhooks`)) as Record<string, unknown>[];
    expect(rows).toHaveLength(2);
    expect(JSON.stringify(rows)).not.toContain(gen.body.secret);
    expect(JSON.stringify(rows)).not.toContain(SECRET);
    expect(String(rows[0]!.secret_ciphertext)).toMatch(/^v1\./);

    expect((await del(gw, admin, `/api/admin/webhooks/${gen.body.id}`)).status).toBe(204);
    const gone = await adminCall(gw, admin, 'GET', `/api/admin/webhooks/${gen.body.id}`);
    expect(gone.status).toBe(404);
    expect(gone.body.error.code).toBe('webhook_not_found');
    expect((await del(gw, admin, `/api/admin/webhooks/${gen.body.id}`)).status).toBe(404);
    expect((await adminCall(gw, admin, 'GET', `/api/admin/webhooks/not-a-uuid/deliveries`)).status).toBe(404);

    const audit = await adminCall(gw, admin, 'GET', '/api/admin/audit?target_type=webhook');
    expect(audit.body.data.map((e: { action: string }) => e.action)).toEqual([
      'webhook.delete',
      'webhook.create',
      'webhook.create',
    ]);
    expect(JSON.stringify(audit.body)).not.toContain(SECRET);
    expect(JSON.stringify(audit.body)).not.toContain(gen.body.secret);
  });

  it('refuses bad input with 400 naming the field', async () => {
    const cases: [Record<string, unknown>, string, RegExp][] = [
      [{ events: ['key.cooling'] }, 'url', /url/],
      [{ url: 'ftp://127.0.0.1/x', events: ['key.cooling'] }, 'url', /http or https, got ftp/],
      [{ url: 'file:///etc/passwd', events: ['key.cooling'] }, 'url', /http or https/],
      [{ url: 'http://user:pw@127.0.0.1/x', events: ['key.cooling'] }, 'url', /credentials/],
      [{ url: 'http://127.0.0.1/x' }, 'events', /events/],
      [{ url: 'http://127.0.0.1/x', events: [] }, 'events', /at least one/],
      [{ url: 'http://127.0.0.1/x', events: ['key.melted'] }, 'events', /"key.melted"/],
      [{ url: 'http://127.0.0.1/x', events: ['*'], secret: 'short' }, 'secret', /secret/],
      [{ url: 'http://127.0.0.1/x', events: ['*'], secret: null }, 'secret', /secret/],
      [{ url: 'http://127.0.0.1/x', events: ['*'], enabled: 'yes' }, 'enabled', /enabled/],
      [{ url: 'http://127.0.0.1/x', events: ['*'], extra: 1 }, 'extra', /extra/],
    ];
    for (const [body, param, message] of cases) {
      const r = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', body);
      expect(r.status, JSON.stringify(body)).toBe(400);
      expect(r.body.error.param, JSON.stringify(body)).toBe(param);
      expect(r.body.error.message, JSON.stringify(body)).toMatch(message);
    }
    const page = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
      url: 'http://127.0.0.1:9/x',
      events: ['*'],
    });
    for (const q of ['limit=0', 'limit=201', 'limit=x', 'cursor=bm9wZQ'])
      expect(
        (await adminCall(gw, admin, 'GET', `/api/admin/webhooks/${page.body.id}/deliveries?${q}`)).status,
      ).toBe(400);
    await del(gw, admin, `/api/admin/webhooks/${page.body.id}`);
  });

  it('refuses link-local, metadata and unspecified addresses even with private upstreams allowed', async () => {
    expect(gw.config.upstream.allowPrivate).toBe(true);
    for (const url of [
      'http://169.254.169.254/latest/meta-data',
      'http://[::ffff:169.254.169.254]/',
      'http://2852039166/',
      'http://100.100.100.200/',
      'http://0.0.0.0:8080/',
      'http://[fe80::1]/',
    ]) {
      const r = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', { url, events: ['*'] });
      expect(r.status, url).toBe(400);
      expect(r.body.error).toMatchObject({ param: 'url', code: 'webhook_url_forbidden' });
    }
    const unresolvable = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
      url: 'http://no-such-host.invalid/x',
      events: ['*'],
    });
    expect(unresolvable.status).toBe(400);
    expect(unresolvable.body.error.code).toBe('webhook_url_unresolvable');
  });

  it('is admin only', async () => {
    const dev = await createUserWithKey(gw, admin, 'developer');
    expect((await adminCall(gw, dev.key, 'GET', '/api/admin/webhooks')).status).toBe(403);
    expect(
      (
        await adminCall(gw, dev.key, 'POST', '/api/admin/webhooks', {
          url: 'http://127.0.0.1/x',
          events: ['*'],
        })
      ).status,
    ).toBe(403);
  });
});

describe('webhooks: private addresses refused when not allowed', () => {
  it('refuses 127.0.0.1 with ALLOW_PRIVATE_UPSTREAMS=false', async () => {
    const admin = newApiKey();
    const gw = await startGateway('embedded', {
      ADMIN_BOOTSTRAP_KEY: admin,
      ALLOW_PRIVATE_UPSTREAMS: 'false',
    });
    try {
      const r = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
        url: 'http://127.0.0.1:9/hook',
        events: ['*'],
      });
      expect(r.status).toBe(400);
      expect(r.body.error).toMatchObject({ param: 'url', code: 'webhook_url_forbidden' });
      expect(r.body.error.message).toContain('ALLOW_PRIVATE_UPSTREAMS');
    } finally {
      await gw.close();
    }
  });
});

describe.each(MODES)('webhook deliveries (%s)', (mode: Mode) => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await Receiver.start();
  });
  afterEach(() => {
    receiver.received.length = 0;
    receiver.statuses = [];
    receiver.answer = null;
  });
  afterAll(async () => {
    await receiver?.close();
  });

  it('sends one correctly signed key.cooling when the provider 429s a key, not one per request while cooling', async () => {
    const relay = await startRelay(mode, { keys: [{ key: 'sk-a' }, { key: 'sk-b' }] });
    try {
      const hook = await adminCall(relay.gw, relay.adminKey, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['key.cooling'],
        secret: SECRET,
      });
      expect(hook.status).toBe(201);
      relay.fake.when({ key: 'sk-a', reply: FakeProvider.rateLimited(30) });
      // enough requests that sk-a is tried (and answers 429) at least once, more while it cools
      for (let i = 0; i < 6; i++)
        await relay.client.chat.completions
          .create({ model: relay.fake.models[0]!, messages: [{ role: 'user', content: 'hi' }] })
          .catch(() => undefined);
      expect(relay.fake.requests.filter((r) => r.key === 'sk-a' && r.status === 429).length).toBeGreaterThan(
        0,
      );
      const [got] = await receiver.waitFor(1);
      expect(got!.headers['content-type']).toBe('application/json');
      expect(got!.headers['x-floodgate-event']).toBe('key.cooling');
      expect(signatureOk(SECRET, got!.raw, got!.headers['x-floodgate-signature'])).toBe(true);
      expect(signatureOk('another-secret-0123456789', got!.raw, got!.headers['x-floodgate-signature'])).toBe(
        false,
      );
      expect(Object.keys(got!.body)).toEqual(['id', 'type', 'created_at', 'data']);
      expect(got!.body).toMatchObject({
        type: 'key.cooling',
        data: {
          key_id: relay.keyIds['sk-a'],
          key_label: 'key-1',
          provider_id: relay.providerId,
          provider_name: 'fake',
          cooldown_source: 'retry-after',
          http_status: 429,
        },
      });
      const until = Date.parse(got!.body.data.cooldown_until);
      expect(until - Date.parse(got!.body.created_at)).toBeGreaterThan(20_000);
      // more traffic while sk-a cools: no second event
      for (let i = 0; i < 4; i++)
        await relay.client.chat.completions
          .create({ model: relay.fake.models[0]!, messages: [{ role: 'user', content: 'hi' }] })
          .catch(() => undefined);
      await new Promise((r) => setTimeout(r, 1500));
      expect(receiver.received).toHaveLength(1);
      const deliveries = await waitUntil('delivered', async () => {
        const d = { body: await deliveriesOf(relay.gw, relay.adminKey, hook.body.id) };
        return d.body.data[0]?.status === 'delivered' ? d : null;
      });
      expect(deliveries.body.data).toHaveLength(1);
      expect(deliveries.body.data[0]).toMatchObject({
        id: got!.headers['x-floodgate-delivery'],
        event_id: got!.body.id,
        event_type: 'key.cooling',
        attempt_count: 1,
        last_http_status: 200,
        next_attempt_at: null,
      });
    } finally {
      await relay.close();
    }
  });

  it('sends one key.broken when the provider refuses a key (401), only to webhooks subscribed to it', async () => {
    const relay = await startRelay(mode, { keys: [{ key: 'sk-a' }, { key: 'sk-b' }] });
    try {
      const hook = await adminCall(relay.gw, relay.adminKey, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['key.broken'],
        secret: SECRET,
      });
      const other = await adminCall(relay.gw, relay.adminKey, 'POST', '/api/admin/webhooks', {
        url: `${receiver.url}/cooling-only`,
        events: ['key.cooling'],
      });
      relay.fake.when({ key: 'sk-a', reply: FakeProvider.unauthorized() });
      for (let i = 0; i < 4; i++)
        await relay.client.chat.completions
          .create({ model: relay.fake.models[0]!, messages: [{ role: 'user', content: 'hi' }] })
          .catch(() => undefined);
      expect(relay.fake.requests.filter((r) => r.key === 'sk-a' && r.status === 401).length).toBeGreaterThan(
        0,
      );
      const [got] = await receiver.waitFor(1);
      expect(got!.headers['x-floodgate-event']).toBe('key.broken');
      expect(signatureOk(SECRET, got!.raw, got!.headers['x-floodgate-signature'])).toBe(true);
      expect(got!.body).toMatchObject({
        type: 'key.broken',
        data: {
          key_id: relay.keyIds['sk-a'],
          provider_id: relay.providerId,
          state: 'invalid',
          reason: 'refused_by_upstream',
          http_status: 401,
        },
      });
      await new Promise((r) => setTimeout(r, 1500));
      expect(receiver.received).toHaveLength(1);
      expect((await deliveriesOf(relay.gw, relay.adminKey, other.body.id)).data).toEqual([]);
      expect((await deliveriesOf(relay.gw, relay.adminKey, hook.body.id)).data).toHaveLength(1);
    } finally {
      await relay.close();
    }
  });

  it('retries a receiver answering 500 twice, then 200: 3 attempts, delivered', async () => {
    const admin = newApiKey();
    const gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: admin });
    try {
      const hook = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['*'],
      });
      receiver.statuses = [500, 500, 200];
      const eventId = gw.app.get(AlertsService).emit('budget.threshold', { threshold_percent: 80 });
      const got = await receiver.waitFor(3);
      expect(got.map((r) => r.headers['x-floodgate-attempt'])).toEqual(['1', '2', '3']);
      expect(new Set(got.map((r) => r.headers['x-floodgate-delivery'])).size).toBe(1);
      for (const r of got) {
        expect(r.body.id).toBe(eventId);
        expect(signatureOk(hook.body.secret, r.raw, r.headers['x-floodgate-signature'])).toBe(true);
      }
      // backoff: about 1 s, then about 5 s
      expect(got[1]!.at - got[0]!.at).toBeGreaterThanOrEqual(900);
      expect(got[2]!.at - got[1]!.at).toBeGreaterThanOrEqual(4500);
      const d = await waitUntil('delivered', async () => {
        const r = { body: await deliveriesOf(gw, admin, hook.body.id) };
        return r.body.data[0]?.status === 'delivered' ? r.body.data[0] : null;
      });
      expect(d.attempt_count).toBe(3);
      expect(d.attempts.map((a: { http_status: number }) => a.http_status)).toEqual([500, 500, 200]);
      expect(d.attempts[0].error).toMatch(/^HTTP 500/);
      expect(d.attempts.every((a: { duration_ms: number }) => a.duration_ms >= 0)).toBe(true);
      expect(d.completed_at).not.toBeNull();
    } finally {
      await gw.close();
    }
  }, 60_000);

  it('gives up after WEBHOOK_MAX_ATTEMPTS and lists deliveries newest first with a cursor', async () => {
    const admin = newApiKey();
    const gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: admin, WEBHOOK_MAX_ATTEMPTS: '1' });
    try {
      const hook = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['breaker.opened'],
      });
      receiver.answer = () => 503;
      const alerts = gw.app.get(AlertsService);
      const ids = [1, 2, 3].map((n) => alerts.emit('breaker.opened', { n }));
      alerts.emit('key.broken', { not: 'subscribed' });
      await receiver.waitFor(3);
      const first = await waitUntil('all failed', async () => {
        const r = { body: await deliveriesOf(gw, admin, hook.body.id, `?limit=2`) };
        return r.body.data.every((d: { status: string }) => d.status === 'failed') ? r.body : null;
      });
      expect(first.data.map((d: { event_id: string }) => d.event_id)).toEqual([ids[2], ids[1]]);
      expect(first.data[0]).toMatchObject({ status: 'failed', attempt_count: 1, last_http_status: 503 });
      expect(first.next_cursor).toEqual(expect.any(String));
      const second = await adminCall(
        gw,
        admin,
        'GET',
        `/api/admin/webhooks/${hook.body.id}/deliveries?limit=2&cursor=${first.next_cursor}`,
      );
      expect(second.body.data.map((d: { event_id: string }) => d.event_id)).toEqual([ids[0]]);
      expect(second.body.next_cursor).toBeNull();
      await new Promise((r) => setTimeout(r, 1500));
      expect(receiver.received).toHaveLength(3);
    } finally {
      await gw.close();
    }
  });

  it('checks the address again when sending (a row pointing at a metadata address is never contacted)', async () => {
    const admin = newApiKey();
    const gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: admin, WEBHOOK_MAX_ATTEMPTS: '1' });
    try {
      const hook = await adminCall(gw, admin, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['*'],
      });
      // as if DNS had changed after the save: the stored URL now leads to a link-local address
      await gw.app.get(DataSource).query(`UPDATE webhooks SET url = 'http://169.254.169.254/hook'`);
      gw.app.get(AlertsService).emit('key.broken', { key_id: 'x' });
      const d = await waitUntil('failed', async () => {
        const r = { body: await deliveriesOf(gw, admin, hook.body.id) };
        return r.body.data[0]?.status === 'failed' ? r.body.data[0] : null;
      });
      expect(d.attempts[0].http_status).toBeNull();
      expect(d.attempts[0].error).toMatch(/refused.*link-local/);
    } finally {
      await gw.close();
    }
  });
});

describe('webhook deliveries across instances (distributed)', () => {
  let receiver: Receiver;
  beforeAll(async () => {
    receiver = await Receiver.start();
  });
  afterAll(async () => {
    await receiver?.close();
  });

  it('sends a delivery left pending by a stopped instance after a restart', async () => {
    receiver.received.length = 0;
    const admin = newApiKey();
    const { env, cleanup } = await isolatedEnv('distributed', { ADMIN_BOOTSTRAP_KEY: admin });
    let app = await createApp(loadConfig(env));
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const url = await app.getUrl();
      const hook = await adminCall({ url }, admin, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['*'],
      });
      receiver.statuses = [500];
      app.get(AlertsService).emit('breaker.opened', { model: 'm' });
      await receiver.waitFor(1);
      await app.close();
      const pending = await waitUntil('first attempt recorded', async () => {
        const probe = await createApp(loadConfig({ ...env, WEBHOOK_POLL_INTERVAL_MS: '60000' }));
        try {
          const rows = (await probe
            .get(DataSource)
            .query(`SELECT status, attempts FROM webhook_deliveries`)) as {
            status: string;
            attempts: number;
          }[];
          return rows[0]?.attempts === 1 ? rows : null;
        } finally {
          await probe.close();
        }
      });
      expect(pending).toEqual([{ status: 'pending', attempts: 1 }]);
      // a new instance on the same database sends the retry
      app = await createApp(loadConfig(env));
      await app.listen({ port: 0, host: '127.0.0.1' });
      const got = await receiver.waitFor(2);
      expect(got[1]!.headers['x-floodgate-attempt']).toBe('2');
      expect(got[1]!.body.id).toBe(got[0]!.body.id);
      const d = await waitUntil('delivered', async () => {
        const r = { body: await deliveriesOf({ url: await app.getUrl() }, admin, hook.body.id) };
        return r.body.data[0]?.status === 'delivered' ? r.body.data[0] : null;
      });
      expect(d.attempts.map((a: { http_status: number }) => a.http_status)).toEqual([500, 200]);
    } finally {
      await app.close();
      await cleanup();
    }
  }, 90_000);

  it('after an ENCRYPTION_KEYS rotation the secret is re-sealed at start and deliveries stay signed with it', async () => {
    receiver.received.length = 0;
    receiver.answer = null;
    const admin = newApiKey();
    const { env, cleanup } = await isolatedEnv('distributed', { ADMIN_BOOTSTRAP_KEY: admin });
    const oldKey = env.ENCRYPTION_KEYS!;
    const newKey = `k2026:${Buffer.alloc(32, 9).toString('base64')}`;
    let app = await createApp(loadConfig(env));
    try {
      await app.listen({ port: 0, host: '127.0.0.1' });
      const hook = await adminCall({ url: await app.getUrl() }, admin, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['*'],
        secret: SECRET,
      });
      expect(hook.status).toBe(201);
      await app.close();
      // the new key first (current), the old one still configured: the start re-seals
      app = await createApp(loadConfig({ ...env, ENCRYPTION_KEYS: `${newKey},${oldKey}` }));
      await app.init();
      const rows = (await app.get(DataSource).query(`SELECT encryption_key_id FROM webhooks`)) as {
        encryption_key_id: string;
      }[];
      expect(rows).toEqual([{ encryption_key_id: 'k2026' }]);
      await app.close();
      // the old key gone: the secret still opens
      app = await createApp(loadConfig({ ...env, ENCRYPTION_KEYS: newKey }));
      await app.init();
      app.get(AlertsService).emit('key.cooling', { key_id: 'k' });
      const [got] = await receiver.waitFor(1);
      expect(signatureOk(SECRET, got!.raw, got!.headers['x-floodgate-signature'])).toBe(true);
    } finally {
      await app.close();
      await cleanup();
    }
  }, 90_000);

  it('two instances: each delivery attempt is sent exactly once', async () => {
    receiver.received.length = 0;
    const admin = newApiKey();
    const cluster = await startGateways(2, { ADMIN_BOOTSTRAP_KEY: admin, WEBHOOK_POLL_INTERVAL_MS: '50' });
    try {
      const [a, b] = cluster.gateways as [TestGateway, TestGateway];
      await adminCall(a, admin, 'POST', '/api/admin/webhooks', { url: receiver.url, events: ['*'] });
      // every delivery fails once, then succeeds: first attempts and retries are both contended
      const seen = new Set<string>();
      receiver.answer = (r) => {
        const d = String(r.headers['x-floodgate-delivery']);
        if (seen.has(d)) return 200;
        seen.add(d);
        return 500;
      };
      const events = 30;
      for (let i = 0; i < events; i++) (i % 2 ? a : b).app.get(AlertsService).emit('budget.threshold', { i });
      await receiver.waitFor(events * 2, 45_000);
      await new Promise((r) => setTimeout(r, 2000));
      expect(receiver.received).toHaveLength(events * 2);
      const pairs = receiver.received.map(
        (r) => `${String(r.headers['x-floodgate-delivery'])}#${String(r.headers['x-floodgate-attempt'])}`,
      );
      expect(new Set(pairs).size).toBe(events * 2);
      const rows = (await a.app.get(DataSource).query(`SELECT status, attempts FROM webhook_deliveries`)) as {
        status: string;
        attempts: number;
      }[];
      expect(rows).toHaveLength(events);
      expect(rows.every((r) => r.status === 'delivered' && Number(r.attempts) === 2)).toBe(true);
    } finally {
      await cluster.close();
    }
  }, 90_000);

  it('two instances both seeing 429s on one key: one key.cooling event', async () => {
    receiver.received.length = 0;
    receiver.answer = null;
    const admin = newApiKey();
    const fake = await FakeProvider.start();
    const cluster = await startGateways(2, { ADMIN_BOOTSTRAP_KEY: admin });
    try {
      const [a, b] = cluster.gateways as [TestGateway, TestGateway];
      const provider = await adminCall(a, admin, 'POST', '/api/admin/providers', {
        name: 'fake',
        base_url: fake.baseUrl,
        models: fake.models,
      });
      await adminCall(a, admin, 'POST', `/api/admin/providers/${provider.body.id}/keys`, {
        label: 'only',
        key: 'sk-a',
      });
      await adminCall(a, admin, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['key.cooling'],
        secret: SECRET,
      });
      // every request is held 300 ms and answered 429: both instances have requests in flight on the key
      fake.when({ key: 'sk-a', reply: { ...FakeProvider.rateLimited(30), delayMs: 300 } });
      const calls = [a, b, a, b, a, b].map((g) =>
        fetch(`${g.url}/v1/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${admin}`, 'content-type': 'application/json' },
          body: JSON.stringify({ model: fake.models[0], messages: [{ role: 'user', content: 'hi' }] }),
        }).then((r) => r.text()),
      );
      await Promise.all(calls);
      expect(fake.requests.filter((r) => r.status === 429).length).toBeGreaterThanOrEqual(2);
      await receiver.waitFor(1);
      await new Promise((r) => setTimeout(r, 2000));
      expect(receiver.received).toHaveLength(1);
      expect(
        signatureOk(
          SECRET,
          receiver.received[0]!.raw,
          receiver.received[0]!.headers['x-floodgate-signature'],
        ),
      ).toBe(true);
    } finally {
      await cluster.close();
      await fake.close();
    }
  });

  it('breaker transitions: one breaker.opened and one breaker.closed, whichever instance reported', async () => {
    receiver.received.length = 0;
    receiver.answer = null;
    const admin = newApiKey();
    const cluster = await startGateways(2, {
      ADMIN_BOOTSTRAP_KEY: admin,
      BREAKER_CONSECUTIVE_FAILURES: '3',
      BREAKER_OPEN_MS: '800',
      BREAKER_MIN_REQUESTS: '1000',
    });
    try {
      const [a, b] = cluster.gateways as [TestGateway, TestGateway];
      await adminCall(a, admin, 'POST', '/api/admin/webhooks', {
        url: receiver.url,
        events: ['breaker.opened', 'breaker.closed'],
      });
      const A = a.app.get(BreakerService);
      const B = b.app.get(BreakerService);
      const t = { providerId: randomUUID(), model: 'gpt-test' };
      await A.admit(t, 'auto');
      await B.admit(t, 'auto');
      A.report(t, 'failure', false);
      B.report(t, 'failure', false);
      A.report(t, 'failure', false);
      B.report(t, 'failure', false);
      const [opened] = await receiver.waitFor(1);
      expect(opened!.body).toMatchObject({
        type: 'breaker.opened',
        data: { provider_id: t.providerId, provider_name: null, model: 'gpt-test', consecutive_failures: 3 },
      });
      expect(Date.parse(opened!.body.data.open_until)).toBeGreaterThan(Date.parse(opened!.body.created_at));
      // after BREAKER_OPEN_MS one probe goes; its success closes the breaker
      await new Promise((r) => setTimeout(r, 900));
      const answers = await Promise.all([A.admit(t, 'auto'), B.admit(t, 'auto')]);
      const prober = answers[0] === 'probe' ? A : B;
      expect(answers.filter((x) => x === 'probe')).toHaveLength(1);
      prober.report(t, 'success', true);
      const got = await receiver.waitFor(2);
      expect(got[1]!.body).toMatchObject({
        type: 'breaker.closed',
        data: { provider_id: t.providerId, model: 'gpt-test' },
      });
      await new Promise((r) => setTimeout(r, 1500));
      expect(receiver.received.map((r) => r.body.type)).toEqual(['breaker.opened', 'breaker.closed']);
    } finally {
      await cluster.close();
    }
  });
});
