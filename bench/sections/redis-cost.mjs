// Redis cost per relayed request (distributed mode, issue 18 item 1): how many Redis commands and
// script calls (EVALSHA) one relayed request costs, how long Redis spends in them (commandstats) and
// how much Redis process CPU — the figure that bounds a fleet: one Redis core serves at most
// 1 s ÷ (Redis CPU per request) requests per second, however many gateway instances there are.
//
// The gateway runs against a private redis-server on a free loopback port (started and killed
// here, nothing on disk), so no other tenant's traffic is counted. Phases, all against the instant
// fake upstream with 4 fixed-concurrency keys (the bench's default configuration):
//   idle   the configured gateway without traffic for `idleS` s: the background rate (Redis' own
//          cron, the gateway's periodic steps) that is subtracted from every phase below;
//   c=1    `n` sequential requests (uncontended: one request at a time);
//   c=K    for each level, K closed-loop clients for `seconds` s (under load).
// Per phase: requests, EVALSHA and other commands per request (commands run inside scripts
// included), the EVALSHA time per request from commandstats (a script's usec includes the commands
// it runs, so the inner commands' own usec are not added again), Redis process CPU per request
// (INFO cpu: used_cpu_user + used_cpu_sys, idle rate subtracted) and the ceiling it implies.
//
// Standalone: `npm run build --silent && node bench/sections/redis-cost.mjs [--entry dist/src/main.js] [--n 1000]`
// Before/after: `node bench/sections/redis-cost.mjs --entry dist-before/src/main.js,dist/src/main.js
// --labels before,after --rounds 2` (rounds alternate the order of the builds).
import { spawn } from 'node:child_process';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { admin, configure, freePort, startGateway } from '../lib/gateway.mjs';
import { checkRunning, onCleanup, sleep, stopChild } from '../lib/procs.mjs';
import { CHAT_BODY } from './throughput.mjs';

export const REDIS_COST = { keys: 4, warmup: 300, n: 1000, idleS: 3, levels: [8, 32], seconds: 5 };

/**
 * The limits "a real key has" (issue 18 item 1), for the `limits: 'real'` profile: every window the
 * admission and the answer path keep, with small limits on their exact sliding logs and large
 * ones on sub-bucket windows. The client key: 600 rpm (exact log) and 2M tpm (the tpm policy);
 * its user 6,000 rpm (sub-buckets); its IP 1,000 rpm (exact log); each upstream key 900 rpm (exact
 * log) and 1M tpm (sub-buckets), plus its concurrency lease and the retreat gate. Sized so that the
 * warm-up and the c=1 phase (REAL_LIMITS.warmup + REAL_LIMITS.n requests in well under a minute)
 * never reach a limit; no load levels (they would).
 */
export const REAL_LIMITS = {
  warmup: 50,
  n: 400,
  levels: [],
  env: { RATE_LIMIT_USER_RPM: '6000', RATE_LIMIT_IP_RPM: '1000', RATE_LIMIT_KEY_RPM: '600' },
  clientLimits: { rpm: 600, tpm: 2_000_000 },
  keyLimits: { max_rpm: 900, max_tpm: 1_000_000 },
};

/**
 * `--grants off,on` with `--limits real`: c=1 and c=8 phases of fixed counts; the c=8 phase on a
 * second client key with the same limits, so each key stays at or under half its 600 rpm
 * (50 + 250, and 250); the IP (1,000 rpm) sees 550.
 */
export const GRANTS_REAL = { n: 250, counted: [{ c: 8, count: 250 }] };

/** A throw-away redis-server of the bench's own. */
export async function startPrivateRedis() {
  checkRunning();
  const port = await freePort();
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--protected-mode', 'no'],
    { stdio: ['ignore', 'ignore', 'inherit'] },
  );
  const off = onCleanup(() => stopChild(child, 3000));
  child.once('exit', off);
  const url = `redis://127.0.0.1:${port}`;
  const client = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 1, retryStrategy: () => null });
  client.on('error', () => undefined);
  const deadline = Date.now() + 10_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited (${child.exitCode})`);
    try {
      if (client.status !== 'ready') await client.connect();
      if ((await client.ping()) === 'PONG') break;
    } catch {
      // not up yet
    }
    if (Date.now() > deadline) throw new Error('redis-server did not answer within 10 s');
    await sleep(50);
  }
  return {
    url,
    pid: child.pid,
    client,
    close: async () => {
      client.disconnect();
      await stopChild(child, 3000);
    },
  };
}

async function sample(client) {
  const [stats, cpu] = await Promise.all([client.info('commandstats'), client.info('cpu')]);
  const cmds = {};
  for (const line of stats.split('\n')) {
    const m = /^cmdstat_([\w|]+):calls=(\d+),usec=(\d+)/.exec(line);
    if (m) cmds[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  }
  const g = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(cpu)?.[1] ?? NaN);
  return { at: performance.now(), cmds, cpuUs: (g('used_cpu_sys') + g('used_cpu_user')) * 1e6 };
}

/** What happened between two samples (INFO excluded: that is us). */
function delta(a, b) {
  const cmds = {};
  for (const [name, v] of Object.entries(b.cmds)) {
    if (name === 'info') continue;
    const calls = v.calls - (a.cmds[name]?.calls ?? 0);
    const usec = v.usec - (a.cmds[name]?.usec ?? 0);
    if (calls > 0) cmds[name] = { calls, usec };
  }
  return { seconds: (b.at - a.at) / 1000, cmds, cpuUs: b.cpuUs - a.cpuUs };
}

function perRequest(d, requests, idle) {
  const idleRate = (name, field) => (idle ? (idle.cmds[name]?.[field] ?? 0) / idle.seconds : 0);
  const commands = {};
  let evalsha = 0;
  let evalshaUs = 0;
  let other = 0;
  for (const [name, v] of Object.entries(d.cmds)) {
    const calls = Math.max(0, v.calls - idleRate(name, 'calls') * d.seconds) / requests;
    const usec = Math.max(0, v.usec - idleRate(name, 'usec') * d.seconds) / requests;
    commands[name] = { calls, usec };
    if (name === 'evalsha' || name === 'eval') {
      evalsha += calls;
      evalshaUs += usec;
    } else other += calls;
  }
  const cpuUs = Math.max(0, d.cpuUs - (idle ? (idle.cpuUs / idle.seconds) * d.seconds : 0)) / requests;
  return {
    requests,
    seconds: d.seconds,
    rps: requests / d.seconds,
    evalsha,
    commands: other,
    evalshaUs,
    cpuUs,
    ceiling: cpuUs > 0 ? 1e6 / cpuUs : NaN,
    perCommand: commands,
  };
}

/**
 * Runs the phases against one gateway build (`entry`) and its own Redis; returns
 * { idle: { cpuUsPerS, commandsPerS }, phases: [{ label, connections, ...perRequest }] }.
 */
export async function redisCost(upstreamUrl, { entry, keys, warmup, n, idleS, levels, seconds, limits = 'bench', grants } = {}) {
  const real = limits === 'real';
  // ADMISSION_GRANTS (docs/scaling.md "Local admission grants"): with real limits, c=1 and c=8 as
  // fixed counts (GRANTS_REAL) that stay under every limit
  const base = real
    ? grants
      ? { ...REDIS_COST, warmup: REAL_LIMITS.warmup, n: GRANTS_REAL.n, levels: [], counted: GRANTS_REAL.counted }
      : { ...REDIS_COST, warmup: REAL_LIMITS.warmup, n: REAL_LIMITS.n, levels: REAL_LIMITS.levels }
    : REDIS_COST;
  const given = real ? { keys, idleS } : { keys, warmup, n, idleS, levels, seconds };
  const o = { ...base, ...Object.fromEntries(Object.entries(given).filter(([, v]) => v !== undefined)) };
  const redis = await startPrivateRedis();
  let gw = null;
  let pool = null;
  try {
    gw = await startGateway('distributed', {
      name: 'redis-cost',
      redisUrl: redis.url,
      ...(entry ? { entry } : {}),
      ...(real || grants ? { env: { ...(real ? REAL_LIMITS.env : {}), ...(grants ? { ADMISSION_GRANTS: grants } : {}) } } : {}),
    });
    const { clientKey } = await configure(gw, upstreamUrl, {
      keys: o.keys,
      ...(real ? { clientLimits: REAL_LIMITS.clientLimits, keyLimits: REAL_LIMITS.keyLimits } : {}),
    });
    pool = new Pool(gw.url, { connections: Math.max(1, ...o.levels), keepAliveTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 });
    let headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
    let failed = 0;
    const one = async () => {
      const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body: CHAT_BODY });
      await r.body.dump();
      if (r.statusCode !== 200) failed++;
    };
    for (let i = 0; i < o.warmup; i++) await one();
    await sleep(1000); // the last answers' asynchronous steps settle
    const i0 = await sample(redis.client);
    await sleep(o.idleS * 1000);
    const idle = delta(i0, await sample(redis.client));
    const phases = [];

    failed = 0;
    let s0 = await sample(redis.client);
    for (let i = 0; i < o.n; i++) await one();
    let d = delta(s0, await sample(redis.client));
    phases.push({ label: 'c=1', connections: 1, failed, ...perRequest(d, o.n, idle) });

    // fixed-count load phases: `count` requests over c closed-loop clients, each phase on a client
    // key of its own with the same limits (a fresh window: every phase far from the key's limit)
    for (const { c, count } of o.counted ?? []) {
      const me = await admin(gw, 'GET', '/api/me');
      const fresh = await admin(gw, 'POST', `/api/admin/users/${me.user?.id ?? me.id}/keys`, {
        name: `bench-c${c}`,
        limits: REAL_LIMITS.clientLimits,
        max_priority: 'urgent',
      });
      headers = { ...headers, authorization: `Bearer ${fresh.key}` };
      failed = 0;
      let next = 0;
      s0 = await sample(redis.client);
      await Promise.all(
        Array.from({ length: c }, async () => {
          while (next < count) {
            next++;
            await one();
          }
        }),
      );
      d = delta(s0, await sample(redis.client));
      phases.push({ label: `c=${c}`, connections: c, failed, ...perRequest(d, count, idle) });
    }

    for (const c of o.levels) {
      failed = 0;
      let done = 0;
      const end = performance.now() + o.seconds * 1000;
      s0 = await sample(redis.client);
      await Promise.all(
        Array.from({ length: c }, async () => {
          while (performance.now() < end) {
            await one();
            done++;
          }
        }),
      );
      d = delta(s0, await sample(redis.client));
      phases.push({ label: `c=${c}`, connections: c, failed, ...perRequest(d, done, idle) });
    }
    const idleCalls = Object.values(idle.cmds).reduce((s, v) => s + v.calls, 0);
    return {
      idle: { cpuUsPerS: idle.cpuUs / idle.seconds, commandsPerS: idleCalls / idle.seconds, seconds: idle.seconds },
      phases,
    };
  } finally {
    await pool?.close().catch(() => undefined);
    await gw?.stop();
    await redis.close();
  }
}

const f1 = (v) => (Number.isFinite(v) ? v.toFixed(1) : 'n/a');
const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : 'n/a');

/** Markdown lines for one or more results ({ label → result }). */
export function redisCostMarkdown(results) {
  const lines = [];
  lines.push('| build | load | requests | req/s | EVALSHA / req | other commands / req | EVALSHA µs / req (commandstats) | Redis CPU µs / req | ceiling: 1 Redis core ÷ CPU per req |');
  lines.push('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [label, r] of Object.entries(results)) {
    for (const p of r.phases) {
      lines.push(
        `| ${label} | ${p.label} | ${int(p.requests)}${p.failed ? ` (${p.failed} not 200)` : ''} | ${int(p.rps)} | ${p.evalsha.toFixed(2)} | ${f1(p.commands)} | ${f1(p.evalshaUs)} | ${int(p.cpuUs)} | ${int(p.ceiling)} req/s |`,
      );
    }
  }
  lines.push('');
  for (const [label, r] of Object.entries(results)) {
    const c1 = r.phases[0];
    const rows = Object.entries(c1.perCommand)
      .filter(([, v]) => v.calls >= 0.005)
      .sort((a, b) => b[1].calls - a[1].calls);
    lines.push(`Per command at c=1 (${label}; calls / req, µs / req; commands inside scripts count under their own name, their µs are also inside EVALSHA's): ${rows.map(([k, v]) => `${k.toUpperCase()} ${v.calls.toFixed(2)} / ${v.usec.toFixed(1)}`).join(', ')}.`);
    lines.push(`Idle background (${label}, subtracted): ${f1(r.idle.commandsPerS)} commands/s, ${int(r.idle.cpuUsPerS)} µs Redis CPU per s.`);
    lines.push('');
  }
  return lines;
}

// Standalone run: `node bench/sections/redis-cost.mjs [--entry a,b] [--labels A,B] [--rounds R] [--n 1000] [--seconds 5] [--limits bench|real] [--grants off,on]`
// (`--limits real`: REAL_LIMITS, c=1 only; --n and --seconds are then ignored; with `--grants`,
// c=1 and c=8 of GRANTS_REAL's fixed counts, once per ADMISSION_GRANTS value)
if (import.meta.url === `file://${process.argv[1]}`) {
  const { cleanupAll, installSignalHandlers, startServer } = await import('../lib/procs.mjs');
  const { closeRedis } = await import('../lib/gateway.mjs');
  installSignalHandlers();
  const argv = process.argv.slice(2);
  const arg = (name, dflt) => {
    const i = argv.indexOf(`--${name}`);
    return i === -1 ? dflt : argv[i + 1];
  };
  const entries = arg('entry', 'dist/src/main.js').split(',');
  const labels = arg('labels', entries.join(',')).split(',');
  const rounds = Number(arg('rounds', 1));
  // `--grants off,on`: every build runs once per ADMISSION_GRANTS value (labels get " grants=<v>")
  const grantValues = arg('grants', '') ? arg('grants', '').split(',') : [undefined];
  const upstream = await startServer('upstream', { delayMs: 0 });
  try {
    const results = {};
    // rounds alternate the builds (A B, B A, …) so a change in the machine's load hits both
    for (let round = 0; round < rounds; round++) {
      const order = entries.flatMap((e, i) =>
        grantValues.map((g) => [e, g === undefined ? (labels[i] ?? e) : `${labels[i] ?? e} grants=${g}`, g]),
      );
      if (round % 2 === 1) order.reverse();
      for (const [entry, label, grants] of order) {
        const name = rounds > 1 ? `${label} (round ${round + 1})` : label;
        results[name] = await redisCost(upstream.url, {
          entry,
          grants,
          limits: arg('limits', 'bench'),
          n: Number(arg('n', REDIS_COST.n)),
          seconds: Number(arg('seconds', REDIS_COST.seconds)),
        });
        console.error(`${name}: ${results[name].phases.map((p) => `${p.label} ${Math.round(p.cpuUs)} µs CPU/req`).join(', ')}`);
      }
    }
    console.log(redisCostMarkdown(results).join('\n'));
  } finally {
    await upstream.close();
    closeRedis();
    await cleanupAll();
  }
  process.exit(0);
}
