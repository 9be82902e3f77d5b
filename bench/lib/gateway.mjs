// Starts the real gateway (node dist/src/main.js) for a benchmark, configured through its admin API.
// Every gateway runs in its own process with bench/lib/gateway-preload.mjs loaded (watchdog, GC
// hook, optional feature switches), logs to bench/out/logs/, and on stop: SIGTERM (SIGKILL after
// 15 s), its database dropped, its Redis prefix deleted. Cleanup is registered with procs.mjs, so
// it also happens on errors and Ctrl-C.
import { randomBytes } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { Redis } from 'ioredis';
import pg from 'pg';
import { checkRunning, onCleanup, spawnNode, stopChild } from './procs.mjs';

export const PG_URL = process.env.DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/test';
export const REDIS_URL = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const ROOT = new URL('../../', import.meta.url).pathname;
const OUT = new URL('../out/', import.meta.url).pathname;
const PRELOAD = new URL('./gateway-preload.mjs', import.meta.url).pathname;
const DB_PREFIX = 'floodgate_bench_';
const REDIS_PREFIX = 'fgbench_';

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

let redis = null;
function redisClient() {
  redis ??= new Redis(REDIS_URL, { lazyConnect: false, maxRetriesPerRequest: 2, connectTimeout: 3000 });
  return redis;
}
/** Closes the shared cleanup connection (call once at the very end). */
export function closeRedis() {
  redis?.disconnect();
  redis = null;
}

async function deletePrefix(prefix) {
  const r = redisClient();
  let cursor = '0';
  let n = 0;
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${prefix}*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) n += await r.unlink(...keys);
  } while (cursor !== '0');
  return n;
}

const alive = (pid) => {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return err.code === 'EPERM';
  }
};

/**
 * Removes what earlier bench runs left behind when they were killed hard (SIGKILL gives no chance
 * to clean up): databases `floodgate_bench_<pid>_*` and Redis keys `fgbench_<pid>_*` whose pid is
 * not running any more. Never touches anything else.
 */
export async function sweepStale() {
  const dropped = [];
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  try {
    const { rows } = await c.query(`SELECT datname FROM pg_database WHERE datname LIKE '${DB_PREFIX}%'`);
    for (const { datname } of rows) {
      const pid = Number(/^floodgate_bench_(\d+)_/.exec(datname)?.[1]);
      if (pid && pid !== process.pid && !alive(pid)) {
        await c.query(`DROP DATABASE IF EXISTS "${datname}" WITH (FORCE)`);
        dropped.push(datname);
      }
    }
  } finally {
    await c.end();
  }
  const r = redisClient();
  const stalePids = new Set();
  let cursor = '0';
  do {
    const [next, keys] = await r.scan(cursor, 'MATCH', `${REDIS_PREFIX}*`, 'COUNT', 1000);
    cursor = next;
    for (const k of keys) {
      const pid = Number(/^fgbench_(\d+)_/.exec(k)?.[1]);
      if (pid && pid !== process.pid && !alive(pid)) stalePids.add(pid);
    }
  } while (cursor !== '0');
  let keys = 0;
  for (const pid of stalePids) keys += await deletePrefix(`${REDIS_PREFIX}${pid}_`);
  return { databases: dropped.length, redisKeys: keys };
}

async function createDatabase() {
  checkRunning();
  const name = `${DB_PREFIX}${process.pid}_${randomBytes(3).toString('hex')}`;
  const c = new pg.Client({ connectionString: PG_URL });
  await c.connect();
  await c.query(`CREATE DATABASE "${name}"`);
  await c.end();
  const off = onCleanup(() => drop());
  const url = new URL(PG_URL);
  url.pathname = `/${name}`;
  let dropped = false;
  async function drop() {
    if (dropped) return;
    dropped = true;
    off();
    const d = new pg.Client({ connectionString: PG_URL });
    await d.connect();
    await d.query(`DROP DATABASE IF EXISTS "${name}" WITH (FORCE)`);
    await d.end();
  }
  return { url: url.toString(), drop };
}

function tail(file, bytes = 4000) {
  try {
    const s = readFileSync(file, 'utf8');
    return s.slice(-bytes);
  } catch {
    return '';
  }
}

/**
 * mode: 'embedded' | 'distributed'. Options:
 *   env        extra environment (feature switches, queue settings, BENCH_DISABLE…)
 *   nodeFlags  node flags before the script (e.g. ['--cpu-prof', '--cpu-prof-dir=…'])
 *   name       label for the log file
 *   join       another distributed gateway whose database and Redis prefix this one shares (a second
 *              instance of the same cluster; the first one's stop drops them)
 *   entry      the script, relative to the repository (bench/ab.mjs: a second build, e.g. dist-before/src/main.js)
 *   redisUrl   distributed: another Redis than REDIS_URL (a private redis-server the caller owns and
 *              throws away; its prefix is then not deleted key by key)
 * Returns { url, adminKey, pid, mode, logFile, stop, gc, databaseUrl, redisPrefix, redisUrl }.
 * Client limits are raised so the limiter decides (one round trip) but never refuses a bench request.
 */
export async function startGateway(
  mode,
  { env: extraEnv = {}, nodeFlags = [], name = 'gateway', join = null, entry = 'dist/src/main.js', redisUrl = REDIS_URL } = {},
) {
  const port = await freePort();
  const adminKey = join?.adminKey ?? newKey();
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
    SHUTDOWN_TIMEOUT_MS: '5000',
    // As `npm start` and the Docker image run it: glibc's mmap threshold fixed at 128 KB, so freed
    // large buffers go back to the OS instead of staying in its arenas (docs/performance.md, memory).
    MALLOC_MMAP_THRESHOLD_: '131072',
    ...extraEnv,
  };
  const cleanups = [];
  let db = null;
  let prefix = null;
  if (mode === 'distributed' && join) {
    env.DATABASE_URL = join.databaseUrl;
    env.REDIS_URL = join.redisUrl ?? redisUrl;
    env.REDIS_PREFIX = join.redisPrefix;
  } else if (mode === 'distributed') {
    db = await createDatabase();
    prefix = `${REDIS_PREFIX}${process.pid}_${randomBytes(3).toString('hex')}`;
    // a private redis-server (redisUrl) is thrown away whole by its owner: nothing to delete here
    if (redisUrl === REDIS_URL) cleanups.push(onCleanup(() => deletePrefix(`${prefix}:`)));
    env.DATABASE_URL = db.url;
    // redisUrl 'cluster:host:port,host:port,…': a (private) Redis Cluster via REDIS_CLUSTER_NODES
    if (redisUrl.startsWith('cluster:')) env.REDIS_CLUSTER_NODES = redisUrl.slice('cluster:'.length);
    else env.REDIS_URL = redisUrl;
    env.REDIS_PREFIX = prefix;
  } else {
    env.DATA_DIR = ':memory:';
  }
  mkdirSync(`${OUT}logs`, { recursive: true });
  const logFile = `${OUT}logs/${name}-${mode}-${port}.log`;
  const fd = openSync(logFile, 'w');
  const proc = spawnNode(['--expose-gc', '--import', PRELOAD, ...nodeFlags, entry], {
    env,
    cwd: ROOT,
    stdio: ['ignore', fd, fd],
  });
  closeSync(fd);
  let stopped = false;
  const stop = async () => {
    if (stopped) return;
    stopped = true;
    await stopChild(proc, 15_000);
    for (const off of cleanups) off();
    if (prefix && redisUrl === REDIS_URL) await deletePrefix(`${prefix}:`).catch((err) => console.error(`bench: clearing ${prefix}: ${err.message}`));
    await db?.drop();
  };
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 90_000;
  try {
    for (;;) {
      if (proc.exitCode !== null) throw new Error(`gateway (${name}, ${mode}) exited with ${proc.exitCode}:\n${tail(logFile)}`);
      try {
        const r = await fetch(`${url}/health/ready`, { signal: AbortSignal.timeout(2000) });
        if (r.status === 200) break;
      } catch {
        // not up yet
      }
      if (Date.now() > deadline) throw new Error(`gateway (${name}, ${mode}) did not start within 90 s:\n${tail(logFile)}`);
      await new Promise((r) => setTimeout(r, 100));
    }
  } catch (err) {
    await stop();
    throw err;
  }
  return {
    url,
    adminKey,
    pid: proc.pid,
    mode,
    name,
    logFile,
    stop,
    databaseUrl: env.DATABASE_URL ?? null,
    redisPrefix: env.REDIS_PREFIX ?? null,
    redisUrl: env.REDIS_URL ?? null,
    /**
     * Warnings and errors the gateway logged (per-request HTTP lines excluded), grouped by message
     * start: e.g. rate-limit decisions that failed open under load. [[message, count], …]
     */
    warnings: () => {
      const counts = new Map();
      let text = '';
      try {
        text = readFileSync(logFile, 'utf8');
      } catch {
        return [];
      }
      for (const line of text.split('\n')) {
        if (!line.startsWith('{')) continue;
        try {
          const j = JSON.parse(line);
          if (j.level < 40 || j.context === 'HTTP') continue;
          const key = String(j.msg ?? '').replace(/\d+/g, 'N').slice(0, 140);
          counts.set(key, (counts.get(key) ?? 0) + 1);
        } catch {
          // not a log line
        }
      }
      return [...counts.entries()].sort((a, b) => b[1] - a[1]);
    },
    /** Full GC in the gateway (SIGUSR2 → gc() in the preload); waits a moment for it to run. */
    gc: async () => {
      proc.kill('SIGUSR2');
      await new Promise((r) => setTimeout(r, 500));
    },
  };
}

export async function admin(gw, method, path, body) {
  const r = await fetch(`${gw.url}${path}`, {
    method,
    headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(15_000),
  });
  const json = await r.json().catch(() => null);
  if (r.status >= 300) throw new Error(`${method} ${path}: ${r.status} ${JSON.stringify(json)}`);
  return json;
}

/**
 * One provider pointing at the fake upstream with `keys` upstream keys of fixed concurrency
 * `maxConcurrent` (fixed, so Adaptive never lowers it and the pool never queues unless a section
 * wants it); returns a client key with huge limits that may use every priority.
 */
export async function configure(
  gw,
  upstreamUrl,
  { keys = 4, maxConcurrent = 10_000, name = 'bench', keyLimits = {}, clientLimits = { rpm: 1000000, tpm: null } } = {},
) {
  const provider = await admin(gw, 'POST', '/api/admin/providers', {
    name,
    base_url: `${upstreamUrl}/v1`,
    models: ['bench-model'],
    timeout_ms: 30_000,
  });
  for (let i = 0; i < keys; i++) {
    await admin(gw, 'POST', `/api/admin/providers/${provider.id}/keys`, {
      label: `k${i}`,
      key: `sk-bench-${i}`,
      max_concurrent: maxConcurrent,
      ...keyLimits,
    });
  }
  const me = await admin(gw, 'GET', '/api/me');
  const key = await admin(gw, 'POST', `/api/admin/users/${me.user?.id ?? me.id}/keys`, {
    name: 'bench',
    limits: clientLimits,
    max_priority: 'urgent',
  });
  return { providerId: provider.id, clientKey: key.key };
}

/** The value of the first /metrics sample line whose name+labels start with `prefix`. */
export async function metricValue(gw, prefix) {
  const text = await (await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  let sum = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith(prefix)) {
      sum += Number(line.split(' ').pop());
      found = true;
    }
  }
  return found ? sum : NaN;
}

/**
 * The gateway's event-loop delay since the previous call, from prom-client's default metrics
 * (monitorEventLoopDelay, reset at every scrape): { p99, max } in ms. Call once before a phase
 * (resets) and once after it. A max far above the p99 means the loop was blocked now and then
 * (a long synchronous task or a GC pause), which is what a latency p99 shows.
 */
export async function loopDelay(gw) {
  const text = await (await fetch(`${gw.url}/metrics`, { signal: AbortSignal.timeout(10_000) })).text();
  const get = (name) => {
    const line = text.split('\n').find((l) => l.startsWith(`${name} `));
    return line ? Number(line.split(' ').pop()) * 1000 : NaN;
  };
  // The histogram records whole timer intervals: an idle loop reads the resolution (10 ms, prom-client's
  // default), so the delay is what lies beyond it.
  const resolution = 10;
  return {
    p99: Math.max(0, get('nodejs_eventloop_lag_p99_seconds') - resolution),
    max: Math.max(0, get('nodejs_eventloop_lag_max_seconds') - resolution),
  };
}
