import { randomBytes, randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { StatusStream } from '../../src/observability/status-stream.js';
import { bearer, newApiKey } from '../support/auth.js';
import { getJson, MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { parseExposition, readSse, sampleValue, type Sample } from './support.js';

/** Every Floodgate family the issue lists (defined on the registry even before anything records). */
const FAMILIES = [
  'floodgate_http_requests_total',
  'floodgate_http_request_duration_seconds',
  'floodgate_relay_requests_total',
  'floodgate_upstream_latency_seconds',
  'floodgate_upstream_ttft_seconds',
  'floodgate_queue_wait_seconds',
  'floodgate_queue_depth',
  'floodgate_tokens_total',
  'floodgate_gateway_overhead_seconds',
  'floodgate_upstream_keys',
  'floodgate_upstream_429_total',
  'floodgate_upstream_key_concurrency_limit',
  'floodgate_upstream_key_in_flight',
  'floodgate_adaptive_adjustments_total',
  'floodgate_retreat_state',
  'floodgate_retreat_effective_rpm',
  'floodgate_upstream_429_rate',
  'floodgate_rate_limit_decisions_total',
  'floodgate_rate_limit_store_errors_total',
];

describe.each(MODES)('metrics, status and stream (%s)', (mode) => {
  let gw: TestGateway;
  const admin = newApiKey();
  const metricsToken = randomBytes(24).toString('base64url');
  const upstreamSecret = `sk-test-${randomBytes(16).toString('hex')}`;
  const providerName = `prov-${randomBytes(3).toString('hex')}`;
  const unknownUserId = randomUUID();
  const unmatchedPath = `/no/such/${randomUUID()}`;
  let providerId: string;
  let samples: Sample[];
  let exposition: string;

  beforeAll(async () => {
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: admin, METRICS_TOKEN: metricsToken });
    const provider = await getJson(`${gw.url}/api/admin/providers`, {
      method: 'POST',
      headers: bearer(admin),
      body: JSON.stringify({
        name: providerName,
        base_url: 'http://127.0.0.1:9/v1',
        models: ['obs-model'],
        rpm: 600,
      }),
    });
    expect(provider.status, JSON.stringify(provider.body)).toBe(201);
    providerId = provider.body.id;
    for (const [label, extra] of [
      ['adaptive-key', {}],
      ['fixed-key', { max_concurrent: 3, max_rpm: 100 }],
    ] as const) {
      const key = await getJson(`${gw.url}/api/admin/providers/${providerId}/keys`, {
        method: 'POST',
        headers: bearer(admin),
        body: JSON.stringify({ label, key: `${upstreamSecret}-${label}`, ...extra }),
      });
      expect(key.status, JSON.stringify(key.body)).toBe(201);
    }

    // Traffic: templated routes with ids, guard rejections, and a path no route matches.
    for (let i = 0; i < 3; i++) expect((await fetch(`${gw.url}/health/live`)).status).toBe(200);
    expect(
      (await getJson(`${gw.url}/api/admin/users/${unknownUserId}`, { headers: bearer(admin) })).status,
    ).toBe(404);
    expect((await getJson(`${gw.url}/api/admin/users/${unknownUserId}`)).status).toBe(401);
    expect((await getJson(`${gw.url}/api/me`, { headers: bearer(newApiKey()) })).status).toBe(401);
    expect((await getJson(`${gw.url}${unmatchedPath}?token=abc`)).status).toBe(404);

    const scraped = await fetch(`${gw.url}/metrics`, {
      headers: { authorization: `Bearer ${metricsToken}` },
    });
    expect(scraped.status).toBe(200);
    expect(scraped.headers.get('content-type')).toMatch(/^text\/plain/);
    exposition = await scraped.text();
    samples = parseExposition(exposition);
  });
  afterAll(async () => gw?.close());

  it('METRICS_TOKEN: 401 in the error shape without or with a wrong token, 200 with it', async () => {
    const none = await getJson(`${gw.url}/metrics`);
    expect(none.status).toBe(401);
    expect(none.body.error).toMatchObject({ type: 'authentication_error', code: 'missing_metrics_token' });
    expect(none.body.error.request_id).toBe(none.headers.get('x-request-id'));
    const wrong = await getJson(`${gw.url}/metrics`, {
      headers: { authorization: `Bearer ${metricsToken}x` },
    });
    expect(wrong.status).toBe(401);
    expect(wrong.body.error.code).toBe('invalid_metrics_token');
    const admin_ = await getJson(`${gw.url}/metrics`, { headers: bearer(admin) });
    expect(admin_.status).toBe(401);
  });

  it('HTTP families use route templates, with sane values', () => {
    const count = (route: string, cls: string): number =>
      sampleValue(samples, 'floodgate_http_requests_total', { method: 'GET', route, status_class: cls });
    expect(count('/health/live', '2xx')).toBe(3);
    expect(count('/api/admin/users/:id', '4xx')).toBe(2);
    expect(count('/api/me', '4xx')).toBe(1);
    expect(count('unmatched', '4xx')).toBe(1);
    expect(
      sampleValue(samples, 'floodgate_http_requests_total', {
        method: 'POST',
        route: '/api/admin/providers',
        status_class: '2xx',
      }),
    ).toBe(1);
    // The histogram agrees with the counter, and durations are plausible (under 10 s, above 0).
    const hCount = sampleValue(samples, 'floodgate_http_request_duration_seconds_count', {
      method: 'GET',
      route: '/health/live',
      status_class: '2xx',
    });
    const hSum = sampleValue(samples, 'floodgate_http_request_duration_seconds_sum', {
      method: 'GET',
      route: '/health/live',
      status_class: '2xx',
    });
    const inf = sampleValue(samples, 'floodgate_http_request_duration_seconds_bucket', {
      method: 'GET',
      route: '/health/live',
      status_class: '2xx',
      le: '+Inf',
    });
    expect(hCount).toBe(3);
    expect(inf).toBe(3);
    expect(hSum).toBeGreaterThan(0);
    expect(hSum).toBeLessThan(10);
  });

  it('rate-limit decisions are counted per policy (the admin calls above passed the key policy)', () => {
    expect(
      sampleValue(samples, 'floodgate_rate_limit_decisions_total', { policy: 'key', result: 'allowed' }),
    ).toBeGreaterThan(0);
    expect(
      sampleValue(samples, 'floodgate_rate_limit_decisions_total', { policy: 'ip', result: 'allowed' }),
    ).toBeGreaterThan(0);
  });

  it('no label carries a raw path, an id, a user id or a key value', () => {
    const values = samples.flatMap((s) => Object.values(s.labels));
    for (const v of values) {
      expect(v).not.toContain(unknownUserId);
      expect(v).not.toContain('/no/such');
      expect(v).not.toContain('token=');
      expect(v).not.toContain(upstreamSecret);
      expect(v).not.toContain(admin);
    }
    const routes = new Set(samples.filter((s) => s.labels.route !== undefined).map((s) => s.labels.route!));
    expect(routes.size).toBeGreaterThan(3);
    for (const r of routes) {
      expect(r === 'unmatched' || r.startsWith('/')).toBe(true);
      expect(r).not.toMatch(/[0-9a-f]{8}-[0-9a-f]{4}-/);
    }
    expect(exposition).not.toContain(upstreamSecret);
  });

  it('every Floodgate family and the default process metrics are exposed', () => {
    for (const f of FAMILIES) expect(exposition, f).toContain(`# TYPE ${f} `);
    for (const f of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'nodejs_eventloop_lag_seconds',
    ]) {
      expect(
        samples.some((s) => s.name === f),
        f,
      ).toBe(true);
    }
    expect(sampleValue(samples, 'process_resident_memory_bytes', {})).toBeGreaterThan(1e6);
  });

  it('scrape-time gauges mirror shared state: queue depth per priority, upstream keys by state', () => {
    for (const priority of ['urgent', 'high', 'normal', 'low']) {
      expect(sampleValue(samples, 'floodgate_queue_depth', { provider: providerName, priority })).toBe(0);
    }
    expect(sampleValue(samples, 'floodgate_upstream_keys', { provider: providerName, state: 'active' })).toBe(
      2,
    );
    expect(
      sampleValue(samples, 'floodgate_upstream_keys', { provider: providerName, state: 'cooling' }),
    ).toBe(0);
    const keyIds = samples
      .filter((s) => s.name === 'floodgate_upstream_key_in_flight')
      .map((s) => s.labels.key_id);
    expect(keyIds).toHaveLength(2);
    expect(
      sampleValue(samples, 'floodgate_upstream_key_concurrency_limit', {
        provider: providerName,
        mode: 'fixed',
      }),
    ).toBe(3);
  });

  it('GET /api/admin/status: documented shape, same numbers as the metrics, never a key value', async () => {
    expect((await getJson(`${gw.url}/api/admin/status`)).status).toBe(401);
    expect(
      (await getJson(`${gw.url}/api/admin/status?history_seconds=9999`, { headers: bearer(admin) })).status,
    ).toBe(400);
    const res = await getJson(`${gw.url}/api/admin/status?history_seconds=60`, { headers: bearer(admin) });
    expect(res.status).toBe(200);
    const s = res.body;
    expect(s).toMatchObject({
      mode,
      version: expect.any(String),
      instance_id: expect.any(String),
      uptime_seconds: expect.any(Number),
      requests: {
        scope: 'instance',
        http_total: expect.any(Number),
        relayed_total: 0,
        rate_limited_total: expect.any(Number),
      },
      errors: { http_5xx: 0, upstream_errors: 0, queue_full_rejects: 0 },
      throughput: { window_seconds: 60 },
      queue: { urgent: 0, high: 0, normal: 0, low: 0, total: 0 },
      adaptive: { recent_adjustments: [] },
      problems: [],
    });
    expect(Object.keys(s.requests.http_by_status_class)).toEqual(['1xx', '2xx', '3xx', '4xx', '5xx']);
    expect(s.requests.http_total).toBeGreaterThanOrEqual(10);
    expect(s.requests.http_by_status_class['4xx']).toBeGreaterThanOrEqual(4); // the 404s and 401s above (a snapshot is shared for 500 ms)
    expect(s.instances.some((i: { id: string; self: boolean }) => i.self && i.id === s.instance_id)).toBe(
      true,
    );
    expect(Array.isArray(s.history)).toBe(true);
    expect(s.sources).toMatchObject({
      live_key_counters: 'wired',
      retreat: 'wired',
      token_bucket: 'wired',
      adaptive_adjustments: 'wired',
    });

    const provider = s.providers.find((p: { id: string }) => p.id === providerId);
    expect(provider).toMatchObject({
      name: providerName,
      enabled: true,
      queue: { urgent: 0, high: 0, normal: 0, low: 0, total: 0 },
      token_bucket: { capacity: expect.any(Number), tokens: expect.any(Number), refill_per_second: 10 },
      retreat: { state: 'normal', effective_rpm: 600, base_rpm: 600, upstream_429_rate: 0 },
      key_states: { active: 2, cooling: 0, disabled: 0, broken: 0, invalid: 0 },
    });
    const byLabel = Object.fromEntries(provider.keys.map((k: { label: string }) => [k.label, k]));
    expect(byLabel['adaptive-key']).toMatchObject({
      state: 'active',
      cooldown_until: null,
      cooldown_remaining_seconds: 0,
      concurrency_mode: 'adaptive',
      concurrency_limit: 8, // Adaptive's starting limit until it learns one
      in_flight: 0,
      rpm_used: null,
      max_rpm: null,
    });
    expect(byLabel['fixed-key']).toMatchObject({
      concurrency_mode: 'fixed',
      concurrency_limit: 3,
      in_flight: 0,
      rpm_used: 0,
      max_rpm: 100,
    });
    expect(JSON.stringify(s)).not.toContain(upstreamSecret);
  });

  it('GET /api/admin/status/stream: retry, ≥2 status events about a second apart, then closes cleanly', async () => {
    const stream = gw.app.get(StatusStream);
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/api/admin/status/stream`, {
      headers: bearer(admin),
      signal: controller.signal,
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toMatch(/^text\/event-stream/);
    expect(res.headers.get('cache-control')).toContain('no-cache');
    const started = Date.now();
    const { frames, raw } = await readSse(
      res,
      (f) => f.filter((x) => x.event === 'status').length >= 2,
      6000,
    );
    expect(raw.startsWith('retry: 2000\n')).toBe(true);
    const events = frames.filter((f) => f.event === 'status');
    expect(events.length).toBeGreaterThanOrEqual(2);
    expect(Date.now() - started).toBeGreaterThanOrEqual(500);
    const first = JSON.parse(events[0]!.data);
    expect(first).toMatchObject({ mode, providers: expect.any(Array), queue: expect.any(Object) });
    expect(Number(events[1]!.id)).toBeGreaterThan(Number(events[0]!.id));
    expect(stream.size).toBe(1);
    controller.abort();
    const deadline = Date.now() + 2000;
    while (stream.size !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    expect(stream.size).toBe(0);
    // The aborted stream was still counted once, as a 200 of the stream route.
    const after = parseExposition(
      await (
        await fetch(`${gw.url}/metrics`, { headers: { authorization: `Bearer ${metricsToken}` } })
      ).text(),
    );
    expect(
      sampleValue(after, 'floodgate_http_requests_total', {
        method: 'GET',
        route: '/api/admin/status/stream',
        status_class: '2xx',
      }),
    ).toBe(1);
  });

  it('every observability route is in the OpenAPI document with a summary', async () => {
    const doc = (await getJson(`${gw.url}/docs-json`)).body;
    for (const path of [
      '/metrics',
      '/api/admin/status',
      '/api/admin/status/stream',
      '/dashboard',
      '/dashboard/assets/dashboard.js',
      '/dashboard/assets/console.js',
      '/dashboard/assets/dashboard.css',
      '/dashboard/assets/chart.umd.js',
    ]) {
      expect(doc.paths[path]?.get?.summary, path).toEqual(expect.any(String));
    }
    expect(doc.paths['/api/admin/status'].get.responses['401']).toBeDefined();
    expect(doc.paths['/metrics'].get.responses['401']).toBeDefined();
  });

  it('GET /dashboard and its assets are served by the gateway (no CDN)', async () => {
    const page = await fetch(`${gw.url}/dashboard`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    expect(page.headers.get('content-security-policy')).toContain("script-src 'self'");
    const html = await page.text();
    expect(html).not.toMatch(/https?:\/\//);
    const chart = await fetch(`${gw.url}/dashboard/assets/chart.umd.js`);
    expect(chart.status).toBe(200);
    expect(await chart.text()).toContain('Chart');
    for (const asset of ['dashboard.js', 'console.js', 'dashboard.css'])
      expect((await fetch(`${gw.url}/dashboard/assets/${asset}`)).status).toBe(200);
  });
});
