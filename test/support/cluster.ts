import { spawn, type ChildProcess } from 'node:child_process';
import type { AddressInfo, Socket } from 'node:net';
import pg from 'pg';
import { createApp } from '../../src/app/create-app.js';
import { loadConfig } from '../../src/config/app-config.js';
import { bearer } from './auth.js';
import type { FakeProvider } from './fake-provider.js';
import { freePort, getJson, spawnGateway, type GatewayProcess, type TestGateway } from './gateway.js';
import { TEST_POSTGRES_URL } from './services.js';

/**
 * Helpers for the multi-instance (test/cluster) and fault (test/faults) suites: a fault-injecting TCP
 * proxy in its own process, poll-until with deadlines, real gateway processes, relay calls and
 * stream readers, and the leak check for error bodies.
 */

/** `CLUSTER_REPEAT=N` repeats the repeatable cluster cases N times (CI runs the reduced default). */
export const CLUSTER_REPEAT = Math.max(1, Math.floor(Number(process.env.CLUSTER_REPEAT ?? 1)) || 1);

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/**
 * Calls `probe` every `intervalMs` until it returns something other than undefined/false, or fails
 * with `what` once `timeoutMs` has passed. Returns the value and how long it took.
 */
export async function pollUntil<T>(
  probe: () => Promise<T | undefined | false> | T | undefined | false,
  options: { timeoutMs: number; intervalMs?: number; what: string },
): Promise<{ value: T; ms: number }> {
  const started = performance.now();
  const deadline = started + options.timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await probe();
      if (value !== undefined && value !== false) return { value, ms: performance.now() - started };
    } catch (err) {
      last = err;
    }
    if (performance.now() > deadline) {
      throw new Error(
        `timed out after ${options.timeoutMs} ms waiting for ${options.what}${last ? ` (last error: ${last instanceof Error ? last.message : JSON.stringify(last)})` : ''}`,
      );
    }
    await sleep(options.intervalMs ?? 20);
  }
}

export function percentile(values: number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(sorted.length * q) - 1))]!;
}

// ---- fault proxy -------------------------------------------------------------------------------

/**
 * The proxy, run as its own Node process (plain CommonJS, no transpiling): forwarding must keep
 * Redis/Postgres speed while the test process is busy driving gateways and clients.
 * Commands: freeze (bytes stop both ways, connections stay: SIGSTOP), thaw, kill (every connection
 * reset and the port closed, so new connections are refused: SIGKILL / restart), revive (listen on
 * the same port again), close.
 */
const PROXY_SOURCE = String.raw`
const net = require('node:net');
const host = process.env.FP_HOST;
const targetPort = Number(process.env.FP_PORT);
const pairs = new Set();
let frozen = false;
let server = null;
let port = 0;
let accepted = 0;
function pause(p) { p.client.unpipe(p.upstream); p.upstream.unpipe(p.client); p.client.pause(); p.upstream.pause(); }
function resume(p) { p.client.pipe(p.upstream); p.upstream.pipe(p.client); p.client.resume(); p.upstream.resume(); }
function kill(s) { if (typeof s.resetAndDestroy === 'function') { try { s.resetAndDestroy(); return; } catch {} } s.destroy(); }
function onConnection(client) {
  accepted++;
  const upstream = net.connect(targetPort, host);
  const pair = { client, upstream };
  pairs.add(pair);
  client.pipe(upstream);
  upstream.pipe(client);
  if (frozen) pause(pair);
  const end = () => { pairs.delete(pair); client.destroy(); upstream.destroy(); };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
}
function listen(p) {
  return new Promise((resolve, reject) => {
    const s = net.createServer(onConnection);
    s.once('error', reject);
    s.listen(p, '127.0.0.1', () => { s.off('error', reject); server = s; resolve(s.address().port); });
  });
}
async function revive() {
  for (let i = 0; ; i++) {
    try { await listen(port); return; } catch (err) {
      if (i >= 40) throw err;
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
process.on('message', async (m) => {
  try {
    if (m.cmd === 'freeze') { frozen = true; for (const p of pairs) pause(p); }
    else if (m.cmd === 'thaw') { frozen = false; for (const p of pairs) resume(p); }
    else if (m.cmd === 'kill') {
      frozen = false;
      if (server) { server.close(); server = null; }
      for (const p of [...pairs]) { kill(p.client); kill(p.upstream); pairs.delete(p); }
    }
    else if (m.cmd === 'revive') { if (!server) await revive(); }
    else if (m.cmd === 'close') {
      for (const p of [...pairs]) { p.client.destroy(); p.upstream.destroy(); }
      if (server) server.close();
      process.send({ ack: m.id, ok: true, accepted, open: 0 });
      process.exit(0);
    }
    process.send({ ack: m.id, ok: true, accepted, open: pairs.size });
  } catch (err) {
    process.send({ ack: m.id, ok: false, error: String(err) });
  }
});
process.on('disconnect', () => process.exit(0));
// The port is taken outside the kernel's ephemeral range (32768-60999 here): a killed proxy gives its
// port up until revive, and an ephemeral port can meanwhile become another socket's (any outgoing
// connection's local port, or another test's listen(0)) — revive then failed with EADDRINUSE.
async function listenFirst() {
  for (let i = 0; ; i++) {
    try { return await listen(20000 + Math.floor(Math.random() * 12000)); } catch (err) { if (i >= 50) throw err; }
  }
}
listenFirst().then((p) => { port = p; process.send({ port: p }); }, (err) => { console.error(err); process.exit(1); });
`;

export interface ProxyStats {
  /** Connections accepted since the start. */
  accepted: number;
  /** Connections open now. */
  open: number;
}

/** A TCP proxy (own process) in front of Redis or Postgres that a test can freeze, kill and revive. */
export class FaultProxy {
  private child: ChildProcess | undefined;
  private seq = 0;
  port = 0;

  private constructor(
    private readonly host: string,
    private readonly targetPort: number,
  ) {}

  /** A proxy in front of the service named by `serviceUrl` (redis://… or postgres://…). */
  static async start(serviceUrl: string): Promise<FaultProxy> {
    const u = new URL(serviceUrl);
    const defaultPort = u.protocol.startsWith('redis') ? 6379 : 5432;
    const proxy = new FaultProxy(u.hostname, Number(u.port || defaultPort));
    proxy.child = spawn(process.execPath, ['-e', PROXY_SOURCE], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { FP_HOST: proxy.host, FP_PORT: String(proxy.targetPort) },
    });
    proxy.port = await new Promise<number>((resolve, reject) => {
      proxy.child!.once('message', (m: { port?: number }) =>
        m.port ? resolve(m.port) : reject(new Error('proxy did not start')),
      );
      proxy.child!.once('exit', (code) => reject(new Error(`proxy exited (${code})`)));
    });
    return proxy;
  }

  private command(cmd: string): Promise<ProxyStats> {
    const child = this.child;
    if (!child?.connected) return Promise.resolve({ accepted: 0, open: 0 });
    const id = ++this.seq;
    return new Promise((resolve, reject) => {
      const onMessage = (m: { ack?: number; ok?: boolean; error?: string } & ProxyStats): void => {
        if (m.ack !== id) return;
        child.off('message', onMessage);
        if (m.ok) resolve({ accepted: m.accepted, open: m.open });
        else reject(new Error(`proxy ${cmd} failed: ${m.error}`));
      };
      child.on('message', onMessage);
      child.send({ cmd, id });
    });
  }

  /** Bytes stop flowing both ways; connections stay open (what a SIGSTOPped server looks like). */
  freeze(): Promise<ProxyStats> {
    return this.command('freeze');
  }

  thaw(): Promise<ProxyStats> {
    return this.command('thaw');
  }

  /** Every connection reset and new ones refused (a SIGKILLed or restarting server). */
  kill(): Promise<ProxyStats> {
    return this.command('kill');
  }

  /** Accept connections again, on the same port (the server is back). */
  revive(): Promise<ProxyStats> {
    return this.command('revive');
  }

  stats(): Promise<ProxyStats> {
    return this.command('stats');
  }

  async close(): Promise<void> {
    const child = this.child;
    if (!child || child.exitCode !== null) return;
    const exited = new Promise((r) => child.once('exit', r));
    await this.command('close').catch(() => undefined);
    await Promise.race([exited, sleep(2000)]);
    if (child.exitCode === null) child.kill('SIGKILL');
  }

  /** `serviceUrl` with its host:port replaced by the proxy's. */
  url(serviceUrl: string): string {
    const u = new URL(serviceUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}

// ---- gateway processes -------------------------------------------------------------------------

/**
 * One more in-process instance on a GIVEN environment (shares the database and Redis prefix of the
 * others started on it). Closing it does not drop the shared database.
 */
export async function startInstance(env: Record<string, string>): Promise<TestGateway> {
  const config = loadConfig(env);
  const app = await createApp(config);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.getHttpServer().address() as AddressInfo;
  return { url: `http://127.0.0.1:${address.port}`, app, config, env, close: () => app.close() };
}

/**
 * Destroys every client connection of in-process gateways (call it right before closing them). An
 * HTTP client may hold a connection on which it never sent a request (undici reconnects after an
 * aborted request); Node's server.close() waits for such a socket until its headers timeout (~60 s).
 */
export function dropClientConnections(...gateways: ({ app: TestGateway['app'] } | undefined)[]): void {
  for (const gw of gateways) gw?.app.getHttpServer().closeAllConnections();
}

/** Waits until a gateway answers /health/live. */
export async function waitLive(url: string, timeoutMs = 60_000, proc?: GatewayProcess): Promise<void> {
  await pollUntil(
    async () => {
      if (proc && proc.proc.exitCode !== null)
        throw new Error(`gateway exited (${proc.proc.exitCode}):\n${proc.output().slice(-3000)}`);
      const res = await fetch(`${url}/health/live`).catch(() => null);
      if (!res) return false;
      await res.arrayBuffer();
      return res.status === 200;
    },
    { timeoutMs, intervalMs: 100, what: `${url}/health/live` },
  ).catch((err: Error) => {
    throw new Error(`${err.message}${proc ? `\n${proc.output().slice(-3000)}` : ''}`);
  });
}

/** A real `node dist/src/main.js` on a free port with `env`, once it answers /health/live. */
export async function spawnLive(env: Record<string, string>): Promise<GatewayProcess> {
  const port = await freePort();
  const proc = spawnGateway({ ...env, PORT: String(port) });
  try {
    await waitLive(proc.url, 60_000, proc);
  } catch (err) {
    await proc.stop();
    throw err;
  }
  return proc;
}

// ---- provider setup and relay calls ------------------------------------------------------------

export interface UpstreamKeySpec {
  key: string;
  label?: string;
  priority?: number;
  max_rpm?: number | null;
  max_tpm?: number | null;
  max_concurrent?: number | null;
}

/** Creates a provider in front of `fake` and its upstream keys through the admin API of `gw`. */
export async function addProvider(
  gw: { url: string },
  adminKey: string,
  fake: FakeProvider,
  keys: UpstreamKeySpec[],
  provider: Record<string, unknown> = {},
): Promise<{ providerId: string; keyIds: string[]; models: string[] }> {
  const body = {
    name: `fake-${Math.random().toString(36).slice(2, 10)}`,
    base_url: fake.baseUrl,
    models: fake.models,
    timeout_ms: 10_000,
    ...provider,
  };
  const p = await getJson(`${gw.url}/api/admin/providers`, {
    method: 'POST',
    headers: bearer(adminKey),
    body: JSON.stringify(body),
  });
  if (p.status !== 201) throw new Error(`creating provider failed: ${p.status} ${JSON.stringify(p.body)}`);
  const keyIds: string[] = [];
  for (const [i, k] of keys.entries()) {
    const r = await getJson(`${gw.url}/api/admin/providers/${p.body.id}/keys`, {
      method: 'POST',
      headers: bearer(adminKey),
      body: JSON.stringify({ label: `key-${i + 1}`, ...k }),
    });
    if (r.status !== 201) throw new Error(`creating key failed: ${r.status} ${JSON.stringify(r.body)}`);
    keyIds.push(r.body.id);
  }
  return { providerId: p.body.id, keyIds, models: body.models as string[] };
}

export interface RelayAnswer {
  status: number;
  body: any;
  text: string;
  headers: Headers;
  requestId: string;
  ms: number;
}

let requestSeq = 0;

/** POST /v1/chat/completions (non-streaming) with a known x-request-id; the message content is `tag`. */
export async function chat(
  url: string,
  apiKey: string,
  tag: string,
  options: { model?: string; priority?: string; signal?: AbortSignal; requestId?: string } = {},
): Promise<RelayAnswer> {
  const requestId =
    options.requestId ??
    `fg-test-${process.pid}-${++requestSeq}-${tag}`.replace(/[^A-Za-z0-9._:-]/g, '-').slice(0, 120);
  const started = performance.now();
  const res = await fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: {
      ...bearer(apiKey),
      'x-request-id': requestId,
      ...(options.priority ? { 'x-priority': options.priority } : {}),
    },
    body: JSON.stringify({
      model: options.model ?? 'gpt-4o-mini',
      messages: [{ role: 'user', content: tag }],
    }),
    signal: options.signal,
  });
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return {
    status: res.status,
    body,
    text,
    headers: res.headers,
    requestId: res.headers.get('x-request-id') ?? requestId,
    ms: performance.now() - started,
  };
}

/** Starts a streaming chat completion; the caller reads (or abandons) `res.body`. */
export async function openStream(
  url: string,
  apiKey: string,
  tag: string,
  options: { model?: string; signal?: AbortSignal } = {},
): Promise<Response> {
  return fetch(`${url}/v1/chat/completions`, {
    method: 'POST',
    headers: bearer(apiKey),
    body: JSON.stringify({
      model: options.model ?? 'gpt-4o-mini',
      messages: [{ role: 'user', content: tag }],
      stream: true,
    }),
    signal: options.signal,
  });
}

export interface SseRead {
  /** `data:` payloads in order (JSON-parsed when possible; "[DONE]" as the string). */
  events: unknown[];
  done: boolean;
  /** The error event's `error` object, if the stream carried one. */
  error: { type?: string; code?: string; message?: string } | null;
  /** When the first byte of the body arrived (performance.now()). */
  firstByteAt: number | null;
  /** true when reading the body failed (connection cut without a clean end). */
  broken: boolean;
}

/** Reads an SSE body to its end (or until `until` says stop, then cancels). */
export async function readSse(res: Response, until?: (events: unknown[]) => boolean): Promise<SseRead> {
  const out: SseRead = { events: [], done: false, error: null, firstByteAt: null, broken: false };
  const reader = res.body!.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out.firstByteAt ??= performance.now();
      buffer += decoder.decode(value, { stream: true });
      let idx: number;
      while ((idx = buffer.indexOf('\n\n')) >= 0) {
        const event = buffer.slice(0, idx);
        buffer = buffer.slice(idx + 2);
        for (const line of event.split('\n')) {
          if (!line.startsWith('data:')) continue;
          const data = line.slice(5).trim();
          if (data === '[DONE]') {
            out.done = true;
            out.events.push(data);
            continue;
          }
          let parsed: unknown = data;
          try {
            parsed = JSON.parse(data);
          } catch {
            // keep the text
          }
          out.events.push(parsed);
          const err = (parsed as { error?: SseRead['error'] } | null)?.error;
          if (err) out.error = err;
        }
      }
      if (until?.(out.events)) {
        await reader.cancel().catch(() => undefined);
        return out;
      }
    }
  } catch {
    out.broken = true;
  }
  return out;
}

/** Destroys every connection the fake provider holds (an upstream dropping mid-stream). */
export function dropUpstreamConnections(fake: FakeProvider): number {
  const sockets = (fake as unknown as { sockets: Set<Socket> }).sockets;
  let n = 0;
  for (const s of sockets) {
    s.destroy();
    n++;
  }
  return n;
}

// ---- observing shared state --------------------------------------------------------------------

export interface KeyStatusView {
  id: string;
  label: string;
  state: string;
  in_flight: number | null;
  rpm_used: number | null;
  concurrency_limit: number | null;
  concurrency_mode: string;
}

/** GET /api/admin/status on `gw`: the provider's entry (keys with live in_flight, retreat, queue). */
export async function providerStatus(
  gw: { url: string },
  adminKey: string,
  providerId: string,
): Promise<{ retreat: any; keys: KeyStatusView[]; queue: Record<string, number>; sources: any } | null> {
  const r = await getJson(`${gw.url}/api/admin/status`, { headers: bearer(adminKey, false) });
  if (r.status !== 200) throw new Error(`GET /api/admin/status: ${r.status} ${JSON.stringify(r.body)}`);
  const p = (r.body.providers as any[]).find((x) => x.id === providerId);
  return p ? { retreat: p.retreat, keys: p.keys, queue: p.queue, sources: r.body.sources } : null;
}

/** Rows of request_log (read straight from Postgres, not through any gateway) for these request ids. */
export async function requestLogRows(databaseUrl: string, requestIds: string[]): Promise<Set<string>> {
  const u = new URL(databaseUrl);
  const base = new URL(TEST_POSTGRES_URL);
  u.hostname = base.hostname;
  u.port = base.port || '5432';
  const client = new pg.Client({ connectionString: u.toString() });
  await client.connect();
  try {
    const r = await client.query<{ request_id: string }>(
      'SELECT request_id FROM request_log WHERE request_id = ANY($1::text[])',
      [requestIds],
    );
    return new Set(r.rows.map((row) => row.request_id));
  } finally {
    await client.end();
  }
}

/**
 * Problems with an error body: not the one error shape, or carrying a stack, a file path or any of
 * the given secrets. Empty when the body is clean.
 */
export function leakProblems(text: string, secrets: string[]): string[] {
  const problems: string[] = [];
  let body: any;
  try {
    body = JSON.parse(text);
  } catch {
    problems.push(`not JSON: ${text.slice(0, 200)}`);
  }
  if (body !== undefined) {
    const e = body?.error;
    if (!e || typeof e.type !== 'string' || typeof e.code !== 'string' || typeof e.message !== 'string')
      problems.push(`not the error shape: ${text.slice(0, 200)}`);
  }
  if (/\n\s+at |at [\w.<>]+ \(|node_modules|\.ts:\d+|\.js:\d+/.test(text))
    problems.push(`stack or path: ${text.slice(0, 300)}`);
  for (const s of secrets) if (s && text.includes(s)) problems.push(`secret in body: ${s.slice(0, 6)}…`);
  return problems;
}
