import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, newApiKey } from '../support/auth.js';
import { freePort, isolatedEnv, MODES, spawnGateway, type GatewayProcess } from '../support/gateway.js';
import { readSse } from './support.js';

interface LogLine {
  level: number;
  msg: string;
  request_id?: string;
  [field: string]: unknown;
}

/**
 * The real process (node dist/src/main.js, JSON logs): every request — answered by a handler, a
 * guard, the not-found handler or the body parser, or abandoned by its client — gets exactly one
 * log line, carrying the route template, status, duration, principal and request id.
 */
describe.each(MODES)('one log line per request (%s, real process)', (mode) => {
  let gw: GatewayProcess;
  let cleanup: () => Promise<void>;
  const admin = newApiKey();

  beforeAll(async () => {
    const port = await freePort();
    const isolated = await isolatedEnv(mode, {
      PORT: String(port),
      LOG_FORMAT: 'json',
      // debug: 2xx answers of /health and /metrics are logged at debug (probes would drown the rest)
      LOG_LEVEL: 'debug',
      ADMIN_BOOTSTRAP_KEY: admin,
    });
    cleanup = isolated.cleanup;
    gw = spawnGateway(isolated.env);
    // a state (the start-up line, or the process exiting); the bound, just under the hook's 90 s, only
    // turns a hang into a message with the output — a loaded machine may take well over 30 s here
    await gw.waitForOutput(/floodgate started/, 85_000);
  });
  afterAll(async () => {
    await gw?.stop();
    await cleanup?.();
  });

  function lines(): LogLine[] {
    return gw
      .output()
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as LogLine);
  }

  async function send(path: string, init: RequestInit = {}): Promise<{ id: string; status: number }> {
    const id = `obs-${randomUUID()}`;
    const headers = { ...(init.headers as Record<string, string>), 'x-request-id': id };
    const res = await fetch(`${gw.url}${path}`, { ...init, headers });
    await res.arrayBuffer();
    return { id, status: res.status };
  }

  /** Waits (no time bound: the test's timeout is the bound) until a log line carries `text`. */
  async function logged(text: string): Promise<void> {
    while (!gw.output().includes(text)) await new Promise((r) => setTimeout(r, 25));
  }

  async function lineFor(id: string): Promise<LogLine> {
    await logged(id);
    // A second line for `id` would come before the line of a request sent after it: that request
    // (answered and logged once its response finished) is a barrier, not a guess at a delay.
    const barrier = (await send('/health/live')).id;
    await logged(barrier);
    const found = lines().filter((l) => JSON.stringify(l).includes(id));
    const raw = gw
      .output()
      .split('\n')
      .filter((l) => l.includes(id));
    expect(raw, `lines carrying ${id}:\n${raw.join('\n')}`).toHaveLength(1);
    return found[0]!;
  }

  it('handler answers: route template, status, duration, principal, handler name', async () => {
    const me = await send('/api/me', { headers: bearer(admin) });
    expect(me.status).toBe(200);
    const line = await lineFor(me.id);
    expect(line).toMatchObject({
      level: 30,
      context: 'HTTP',
      request_id: me.id,
      method: 'GET',
      route: '/api/me',
      path: '/api/me',
      status_code: 200,
      principal_id: expect.any(String),
      handler: 'MeController.me',
    });
    expect(line.duration_ms).toEqual(expect.any(Number));
    expect(line.msg).toMatch(/^GET \/api\/me 200 \d+ms$/);

    const userId = randomUUID();
    const missing = await send(`/api/admin/users/${userId}`, { headers: bearer(admin) });
    expect(missing.status).toBe(404);
    expect(await lineFor(missing.id)).toMatchObject({
      level: 40,
      route: '/api/admin/users/:id',
      path: `/api/admin/users/${userId}`,
      status_code: 404,
      error_type: 'invalid_request_error',
      error_class: 'ApiError',
    });
  });

  it('guard rejections (401 from the auth guard) are logged once, with the error type and code', async () => {
    const badKey = await send('/api/me', { headers: bearer(newApiKey()) });
    expect(badKey.status).toBe(401);
    const line = await lineFor(badKey.id);
    expect(line).toMatchObject({
      level: 40,
      route: '/api/me',
      status_code: 401,
      error_type: 'authentication_error',
      principal_id: null,
    });
    expect(line.error_code).toEqual(expect.any(String));
    expect(line.handler).toBeUndefined(); // never reached a handler
    expect(JSON.stringify(line)).not.toContain(admin);

    const anonymous = await send(`/api/admin/users/${randomUUID()}`);
    expect(anonymous.status).toBe(401);
    expect(await lineFor(anonymous.id)).toMatchObject({ route: '/api/admin/users/:id', status_code: 401 });
  });

  it('404 for an unknown path, 400 from the body parser, probes and scrapes: one line each', async () => {
    const nowhere = await send(`/nowhere/${randomUUID()}?secret=1`);
    expect(nowhere.status).toBe(404);
    const line = await lineFor(nowhere.id);
    expect(line).toMatchObject({
      route: 'unmatched',
      status_code: 404,
      error_type: 'invalid_request_error',
      error_code: 'not_found',
    });
    expect(line.path).not.toContain('secret');

    const badJson = await send('/api/keys', {
      method: 'POST',
      headers: { ...bearer(admin), 'content-type': 'application/json' },
      body: '{"name":',
    });
    expect(badJson.status).toBe(400);
    expect(await lineFor(badJson.id)).toMatchObject({ status_code: 400, error_code: 'invalid_json' });

    const live = await send('/health/live');
    expect(live.status).toBe(200);
    expect(await lineFor(live.id)).toMatchObject({ level: 20, route: '/health/live', status_code: 200 });

    const metrics = await send('/metrics');
    expect(metrics.status).toBe(200);
    expect(await lineFor(metrics.id)).toMatchObject({ level: 20, route: '/metrics' });
  });

  it('pino-http writes no second "request completed" line', () => {
    expect(gw.output()).not.toContain('request completed');
    expect(lines().filter((l) => l.req !== undefined && l.res !== undefined)).toHaveLength(0);
  });

  it('a client closing an SSE stream: one line marked aborted; SIGTERM ends open streams and exits promptly', async () => {
    const id = `obs-${randomUUID()}`;
    const controller = new AbortController();
    const res = await fetch(`${gw.url}/api/admin/status/stream`, {
      headers: { ...bearer(admin), 'x-request-id': id },
      signal: controller.signal,
    });
    await readSse(res, (f) => f.some((x) => x.event === 'status'), 30_000);
    controller.abort();
    expect(await lineFor(id)).toMatchObject({
      route: '/api/admin/status/stream',
      status_code: 200,
      aborted: true,
    });

    // A stream still open at SIGTERM gets `event: shutdown` and ends; the drain does not wait for it.
    const open = await readSse(
      await fetch(`${gw.url}/api/admin/status/stream`, { headers: bearer(admin) }),
      (f) => f.some((x) => x.event === 'status'),
      30_000,
    );
    gw.proc.kill('SIGTERM');
    await open.until(() => false, 30_000); // to the end of the stream
    expect(open.ended).toBe(true);
    expect(open.frames.some((f) => f.event === 'shutdown')).toBe(true);
    // exit code 0: the drain completed; had it waited for the stream until SHUTDOWN_TIMEOUT_MS, the
    // process would have been forced out with 1 (src/app/shutdown.ts) — a state, not a stopwatch
    expect(await gw.exited).toBe(0);
    expect(gw.output()).not.toContain('drain did not finish');
  });
});
