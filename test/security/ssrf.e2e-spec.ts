/**
 * SSRF through provider base URLs, from the outside (HTTP only). test/key-pool/ssrf.e2e-spec.ts has
 * the basic spelling table and the connector unit checks; this file adds the spellings it lacks
 * (IPv6 unspecified/compatible/NAT64/6to4 forms, WHATWG host normalisation: percent-encoding,
 * ideographic dots, full-width digits, backslash authority), PATCH, a loopback sentinel that must see
 * zero connections, no redirect following, and the connect-time guard after a restart: a provider
 * saved while private upstreams were allowed is refused at request time once they are not.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { isolatedEnv, startGateway, type TestGateway } from '../support/gateway.js';
import { adminCall } from '../support/relay.js';
import { startOn } from '../key-pool/helpers.js';
import { call, NO_CLIENT_LIMITS, Sentinel } from './helpers.js';

const REFUSAL_CODES = ['base_url_forbidden', 'base_url_invalid', 'base_url_unresolvable'];

/** [base_url, expected code ('*' = any refusal code: names that may or may not resolve here)] */
function spellings(p: number): [string, string][] {
  return [
    // loopback, every spelling (the sentinel listens on 127.0.0.1:p and [::1]:p)
    [`http://127.0.0.1:${p}/v1`, 'base_url_forbidden'],
    [`https://127.0.0.1:${p}/v1`, 'base_url_forbidden'],
    [`http://127.0.0.1.:${p}/v1`, 'base_url_forbidden'],
    [`http://127.1:${p}/v1`, 'base_url_forbidden'],
    [`http://127.0.1:${p}/v1`, 'base_url_forbidden'],
    [`http://0x7f.1:${p}/v1`, 'base_url_forbidden'],
    [`http://0177.0.0.1:${p}/v1`, 'base_url_forbidden'],
    [`http://0x7f.0x0.0x0.0x1:${p}/v1`, 'base_url_forbidden'],
    [`http://017700000001:${p}/v1`, 'base_url_forbidden'],
    [`http://2130706433:${p}/v1`, 'base_url_forbidden'],
    [`http://0x7f000001:${p}/v1`, 'base_url_forbidden'],
    [`http://127.255.255.254:${p}/v1`, 'base_url_forbidden'],
    [`http://%31%32%37.0.0.1:${p}/v1`, 'base_url_forbidden'],
    [`http://127%2e0%2e0%2e1:${p}/v1`, 'base_url_forbidden'],
    [`http://127\u30020\u30020\u30021:${p}/v1`, 'base_url_forbidden'],
    [`http://\u2460\u2461\u2466.0.0.1:${p}/v1`, 'base_url_forbidden'],
    [`http://\uff11\uff12\uff17.0.0.1:${p}/v1`, 'base_url_forbidden'],
    [`http://127.0.0.1:${p}\\@example.com/v1`, 'base_url_forbidden'],
    [`http://[::1]:${p}/v1`, 'base_url_forbidden'],
    [`http://[0000:0000:0000:0000:0000:0000:0000:0001]:${p}/v1`, 'base_url_forbidden'],
    [`http://[::ffff:127.0.0.1]:${p}/v1`, 'base_url_forbidden'],
    [`http://[::ffff:7f00:1]:${p}/v1`, 'base_url_forbidden'],
    [`http://[0:0:0:0:0:ffff:127.0.0.1]:${p}/v1`, 'base_url_forbidden'],
    [`http://[::127.0.0.1]:${p}/v1`, 'base_url_forbidden'],
    [`http://[::ffff:0:127.0.0.1]:${p}/v1`, 'base_url_forbidden'],
    [`http://[64:ff9b::127.0.0.1]:${p}/v1`, 'base_url_forbidden'],
    [`http://[2002:7f00:1::]:${p}/v1`, 'base_url_forbidden'],
    [`http://localhost:${p}/v1`, 'base_url_forbidden'],
    [`http://LOCALHOST:${p}/v1`, 'base_url_forbidden'],
    [`http://localhost.:${p}/v1`, '*'],
    [`http://sub.localhost:${p}/v1`, '*'],
    [`http://ip6-localhost:${p}/v1`, '*'],
    [`http://[::1%25lo]:${p}/v1`, '*'],
    // unspecified ("this host")
    [`http://0.0.0.0:${p}/v1`, 'base_url_forbidden'],
    [`http://0:${p}/v1`, 'base_url_forbidden'],
    [`http://0x0:${p}/v1`, 'base_url_forbidden'],
    [`http://[::]:${p}/v1`, 'base_url_forbidden'],
    [`http://[0:0:0:0:0:0:0:0]:${p}/v1`, 'base_url_forbidden'],
    [`http://[::ffff:0.0.0.0]:${p}/v1`, 'base_url_forbidden'],
    // link-local and cloud metadata
    ['http://169.254.169.254/latest/meta-data', 'base_url_forbidden'],
    ['http://169.254.169.254.:80/', 'base_url_forbidden'],
    ['http://2852039166/', 'base_url_forbidden'],
    ['http://0xa9.0xfe.0xa9.0xfe/', 'base_url_forbidden'],
    ['http://0251.254.169.254/', 'base_url_forbidden'],
    ['http://169.254.43518/', 'base_url_forbidden'],
    ['http://[::ffff:169.254.169.254]/', 'base_url_forbidden'],
    ['http://[::ffff:a9fe:a9fe]/', 'base_url_forbidden'],
    ['http://[64:ff9b::a9fe:a9fe]/', 'base_url_forbidden'],
    ['http://[2002:a9fe:a9fe::]/', 'base_url_forbidden'],
    ['http://[fe80::a9fe:a9fe]/', 'base_url_forbidden'],
    ['http://[fd00:ec2::254]/', 'base_url_forbidden'],
    ['http://[fd00:ec2:0:0:0:0:0:254]/', 'base_url_forbidden'],
    ['http://100.100.100.200/', 'base_url_forbidden'],
    ['http://168.63.129.16/', 'base_url_forbidden'],
    ['http://metadata.google.internal/computeMetadata/v1', '*'],
    ['http://metadata/', '*'],
    // private, broadcast, multicast
    ['http://10.0.0.1/v1', 'base_url_forbidden'],
    ['http://172.31.255.1/v1', 'base_url_forbidden'],
    ['http://192.168.1.1/v1', 'base_url_forbidden'],
    ['http://[fc00::1]/v1', 'base_url_forbidden'],
    ['http://255.255.255.255/', 'base_url_forbidden'],
    ['http://224.0.0.1/', 'base_url_forbidden'],
    ['http://[ff02::1]/', 'base_url_forbidden'],
    // not http(s), credentials, fragments that smuggle a host
    [`ftp://127.0.0.1:${p}/`, 'base_url_invalid'],
    [`file:///etc/passwd`, 'base_url_invalid'],
    [`gopher://127.0.0.1:${p}/_GET`, 'base_url_invalid'],
    [`http://example.com@127.0.0.1:${p}/v1`, 'base_url_invalid'],
    [`http://93.184.216.34#@127.0.0.1:${p}/`, 'base_url_invalid'],
    [`http://93.184.216.34?@127.0.0.1:${p}/`, 'base_url_invalid'],
    [`//127.0.0.1:${p}/v1`, 'base_url_invalid'],
    [`127.0.0.1:${p}`, '*'],
  ];
}

describe('security: SSRF base_url spellings with ALLOW_PRIVATE_UPSTREAMS=false', () => {
  let gw: TestGateway;
  const sentinel = new Sentinel();
  const adminKey = newApiKey();

  beforeAll(async () => {
    await sentinel.start();
    gw = await startGateway('embedded', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      ALLOW_PRIVATE_UPSTREAMS: 'false',
      ...NO_CLIENT_LIMITS,
    });
  });
  afterAll(async () => {
    await gw?.close();
    await sentinel.close();
  });

  it('POST: every spelling → 400 naming base_url with the right code; nothing saved; the sentinel sees 0 connections', async () => {
    const problems: string[] = [];
    for (const [base_url, code] of spellings(sentinel.port)) {
      const r = await adminCall(gw, adminKey, 'POST', '/api/admin/providers', {
        name: 'ssrf',
        base_url,
        models: ['m'],
      });
      const codeOk =
        code === '*' ? REFUSAL_CODES.includes(r.body?.error?.code) : r.body?.error?.code === code;
      if (r.status !== 400 || r.body.error.param !== 'base_url' || !codeOk)
        problems.push(`${base_url} → ${r.status} ${JSON.stringify(r.body).slice(0, 160)}`);
    }
    expect(problems).toEqual([]);
    const list = await adminCall(gw, adminKey, 'GET', '/api/admin/providers');
    expect(list.body.data ?? list.body).toEqual([]);
    expect(sentinel.connections).toBe(0);
  });

  it('PATCH: the same spellings on an existing provider → 400, base_url unchanged', async () => {
    const created = await adminCall(gw, adminKey, 'POST', '/api/admin/providers', {
      name: 'public',
      base_url: 'http://93.184.216.34/v1',
      models: ['m'],
    });
    expect(created.status).toBe(201);
    const problems: string[] = [];
    for (const [base_url] of spellings(sentinel.port)) {
      const r = await adminCall(gw, adminKey, 'PATCH', `/api/admin/providers/${created.body.id}`, {
        base_url,
      });
      if (r.status !== 400 || r.body.error.param !== 'base_url') problems.push(`${base_url} → ${r.status}`);
    }
    expect(problems).toEqual([]);
    const after = await adminCall(gw, adminKey, 'GET', `/api/admin/providers/${created.body.id}`);
    expect(after.body.base_url).toBe('http://93.184.216.34/v1');
    expect(sentinel.connections).toBe(0);
  });

  it('refusals never include a stack or internal error text, and never 5xx', async () => {
    const r = await adminCall(gw, adminKey, 'POST', '/api/admin/providers', {
      name: 'ssrf2',
      base_url: `http://[::ffff:127.0.0.1]:${sentinel.port}/`,
    });
    expect(r.status).toBe(400);
    expect(JSON.stringify(r.body)).not.toMatch(/\n\s+at |Error:|node:internal/);
  });
});

describe('security: connect-time guard after a restart (distributed mode, shared database)', () => {
  const adminKey = newApiKey();
  let fake: FakeProvider;
  const sentinel = new Sentinel();
  let env: Record<string, string>;
  let cleanup: () => Promise<void>;
  let gw: TestGateway | null = null;

  beforeAll(async () => {
    fake = await FakeProvider.start();
    await sentinel.start();
    ({ env, cleanup } = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      ...NO_CLIENT_LIMITS,
    }));
  });
  afterAll(async () => {
    await gw?.close();
    await cleanup?.();
    await fake?.close();
    await sentinel.close();
  });

  it('saved with private upstreams allowed → relays; restarted with them disallowed → 502 upstream_address_refused and no connection', async () => {
    const chat = { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] };
    // 1. Private upstreams allowed: the loopback fake provider is accepted and used.
    gw = await startOn({ ...env, ALLOW_PRIVATE_UPSTREAMS: 'true' });
    const provider = await adminCall(gw, adminKey, 'POST', '/api/admin/providers', {
      name: 'private',
      base_url: fake.baseUrl,
      models: ['gpt-4o-mini'],
      timeout_ms: 3000,
    });
    expect(provider.status).toBe(201);
    const key = await adminCall(gw, adminKey, 'POST', `/api/admin/providers/${provider.body.id}/keys`, {
      label: 'k',
      key: 'sk-private-1',
    });
    expect(key.status).toBe(201);
    const first = await call(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(adminKey, false),
      body: chat,
    });
    expect(first.status, first.text).toBe(200);
    await gw.close();
    gw = null;

    // 2. Restart with private upstreams disallowed: the stored provider is refused when dialled.
    const connectionsBefore = fake.totalConnections;
    const requestsBefore = fake.requests.length;
    gw = await startOn({ ...env, ALLOW_PRIVATE_UPSTREAMS: 'false' });
    const refused = await call(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(adminKey, false),
      body: chat,
    });
    expect(refused.status, refused.text).toBe(502);
    expect(refused.body.error).toMatchObject({ type: 'upstream_error', code: 'upstream_address_refused' });
    expect(JSON.stringify(refused.body)).not.toContain('sk-private-1');
    const stream = await call(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(adminKey, false),
      body: { ...chat, stream: true },
    });
    expect(stream.status).toBe(502);
    expect(fake.totalConnections - connectionsBefore, 'no connection reached the private upstream').toBe(0);
    expect(fake.requests.length).toBe(requestsBefore);
    // And it cannot be re-saved as it is.
    const resave = await adminCall(gw, adminKey, 'PATCH', `/api/admin/providers/${provider.body.id}`, {
      base_url: fake.baseUrl,
    });
    expect(resave.status).toBe(400);
    expect(resave.body.error).toMatchObject({ param: 'base_url', code: 'base_url_forbidden' });
  });
});
