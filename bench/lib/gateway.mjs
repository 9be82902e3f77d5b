// Starts the real gateway (node dist/src/main.js) for a benchmark, configured through its admin API.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import net from 'node:net';
import pg from 'pg';

export const PG_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';

export async function freePort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const port = s.address().port;
  await new Promise((r) => s.close(r));
  return port;
}

export function newKey() {
  return `fg_${randomBytes(32).toString('base64url')}`;
}

async function createDatabase() {
  const name = `floodgate_bench_${process.pid}_${randomBytes(3).toString('hex')}`;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`CREATE DATABASE "${name}"`);
  await c.end();
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  return {
    url: url.toString(),
    drop: async () => {
      const d = new pg.Client({ connectionString: PG_URL });
      await d.connect();
      await d.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
      await d.end();
    },
  };
}

/**
 * mode: 'embedded' | 'distributed'. extraEnv: feature switches. Returns { url, adminKey, pid, stop }.
 * Client limits are raised so the limiter decides (one round trip) but never refuses a bench request.
 */
export async function startGateway(mode, extraEnv = {}) {
  const port = await freePort();
  const adminKey = newKey();
  const env = {
    PATH: process.env.PATH,
    NODE_ENV: 'production',
    PORT: String(port),
    HOST: '127.0.0.1',
    LOG_LEVEL: 'warn',
    LOG_FORMAT: 'json',
    ENCRYPTION_KEYS: `bench:${Buffer.alloc(32, 9).toString('base64')}`,
    ADMIN_BOOTSTRAP_KEY: adminKey,
    ALLOW_PRIVATE_UPSTREAMS: 'true',
    RATE_LIMIT_KEY_RPM: '1000000',
    RATE_LIMIT_USER_RPM: '1000000',
    RATE_LIMIT_IP_RPM: '1000000',
    ...extraEnv,
  };
  let db = null;
  if (mode === 'distributed') {
    db = await createDatabase();
    env.DATABASE_URL = db.url;
    env.REDIS_URL = REDIS_URL;
    env.REDIS_PREFIX = `fgbench${randomBytes(3).toString('hex')}`;
  } else {
    env.DATA_DIR = ':memory:';
  }
  const proc = spawn(process.execPath, ['dist/src/main.js'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 60_000;
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`gateway exited: ${out}`);
    try {
      const r = await fetch(`${url}/health/ready`);
      if (r.status === 200) break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error(`gateway did not start: ${out}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  return {
    url,
    adminKey,
    pid: proc.pid,
    output: () => out,
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGTERM');
        await new Promise((r) => proc.once('exit', r));
      }
      await db?.drop();
    },
  };
}

export async function admin(gw, method, path, body) {
  const r = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const json = await r.json().catch(() => null);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

/** One provider pointing at the fake upstream with `keys` upstream keys; returns a client key with huge limits. */
export async function configure(gw, upstreamUrl, { keys = 4 } = {}) {
  const provider = await admin(gw, 'POST', '/api/admin/providers', {
    name: 'bench',
    base_url: `${upstreamUrl}/v1`,
    models: ['bench-model'],
    timeout_ms: 30_000,
  });
  for (let i = 0; i < keys; i++) {
    await admin(gw, 'POST', `/api/admin/providers/${provider.id}/keys`, { label: `k${i}`, key: `sk-bench-${i}`, max_concurrent: 10000 });
  }
  const me = await admin(gw, 'GET', '/api/me');
  const key = await admin(gw, 'POST', `/api/admin/users/${me.user?.id ?? me.id}/keys`, {
    name: 'bench',
    limits: { rpm: 1000000, tpm: null },
    max_priority: 'urgent',
  });
  return { providerId: provider.id, clientKey: key.key };
}
