#!/usr/bin/env node
// `npm run bench` (builds via the npm script, then runs this): measures Floodgate against baselines
// taken in the same run — direct to a fake provider, and a minimal node:http + undici pass-through
// proxy — prints markdown tables and writes bench/RESULTS.md. 127.0.0.1 only; every phase bounded in
// count and time; every process, database and Redis prefix it creates is removed at the end, on
// errors and on Ctrl-C.
//
//   node bench/run.mjs [--quick] [--only latency,throughput,ladder,streaming,queue,contended,redis,memory,profile]
//                      [--profile] [--no-write] [--no-peer]
//
// --quick: reduced counts and durations (CI smoke, < 2 min). --profile: also profile the gateway
// (--cpu-prof) under relay load and write bench/out/profile-summary.md. Only a full run (no --quick,
// no --only) writes bench/RESULTS.md; the others write bench/out/RESULTS.md. --no-write: print only.
// --no-peer: without the Portkey peer column (otherwise installed into bench/.peer/ at bench time,
// see bench/lib/peer.mjs; skipped with a note when the install or start fails).
// Sections and how they measure: docs/performance.md.
import { mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { Pool } from 'undici';
import { blockLatency, interleavedLatency } from './latency.mjs';
import { summarise, summaryMarkdown } from './lib/cpuprofile.mjs';
import { closeRedis, configure, loopDelay, metricValue, startGateway, sweepStale } from './lib/gateway.mjs';
import { abort, cleanupAll, installSignalHandlers, rssMB, rssSampler, sleep, startServer, stopping, withTimeout } from './lib/procs.mjs';
import { fmt } from './lib/stats.mjs';
import { CONTENDED, contendedClosedLoop } from './sections/contended.mjs';
import { REAL_LIMITS, REDIS_COST, redisCost, redisCostMarkdown } from './sections/redis-cost.mjs';
import { PORTKEY_VERSION, startPortkey } from './lib/peer.mjs';
import { QUEUE_ENV, contention } from './sections/queue.mjs';
import { burstTtfb, concurrentStreams, ttft } from './sections/streaming.mjs';
import { CHAT_BODY, P99_LIMIT_MS, interleavedCpuRatio, sweep } from './sections/throughput.mjs';

// ---- arguments ----------------------------------------------------------------------------------

const argv = process.argv.slice(2);
const quick = argv.includes('--quick');
const write = !argv.includes('--no-write');
const withPeer = !argv.includes('--no-peer');
const ALL = ['latency', 'throughput', 'ladder', 'streaming', 'queue', 'contended', 'redis', 'memory'];
const KNOWN = [...ALL, 'profile'];
const onlyIdx = argv.indexOf('--only');
const onlyArg = argv.find((a) => a.startsWith('--only='))?.slice(7) ?? (onlyIdx !== -1 ? argv[onlyIdx + 1] : null);
const selected = new Set(onlyArg ? onlyArg.split(',').map((s) => s.trim()).filter(Boolean) : ALL);
if (argv.includes('--profile')) selected.add('profile');
for (const s of selected) {
  if (!KNOWN.includes(s)) {
    console.error(`unknown section ${s}; known: ${KNOWN.join(', ')}`);
    process.exit(2);
  }
}
const on = (s) => selected.has(s);

const C = quick
  ? {
      latency: { rounds: 5, perRound: 40, warmup: 100 },
      throughput: { levels: [1, 64], durationS: 2, warmupS: 1 },
      cpuRatio: { pairs: 2, durationS: 1 },
      memoryAfterS: 3,
      memoryIdleS: 3,
      ladder: { rounds: 3, perRound: 40, warmup: 60 },
      ttft: { rounds: 2, perRound: 40, warmup: 15 },
      streams: { start: 50, max: 50, budgetS: 10 },
      burst: { streams: 32, rounds: 3, warmupRounds: 1 },
      queue: { rate: 500, seconds: 2 },
      contended: { clients: 64, seconds: 3, warmupS: 1 },
      redis: { n: 300, levels: [8], seconds: 2, idleS: 2 },
      profileS: 6,
    }
  : {
      latency: { rounds: 15, perRound: 100, warmup: 300 },
      throughput: { levels: [1, 8, 64, 256], durationS: 5, warmupS: 2 },
      // issue 14's CPU goal: proxy and gateway in adjacent windows (see interleavedCpuRatio)
      cpuRatio: { pairs: 7, durationS: 3 },
      memoryAfterS: 12,
      memoryIdleS: 12,
      ladder: { rounds: 10, perRound: 100, warmup: 200 },
      ttft: { rounds: 5, perRound: 100, warmup: 50 },
      streams: { start: 50, max: 1600, budgetS: 45 },
      burst: { streams: 32, rounds: 10, warmupRounds: 2 },
      queue: { rate: 500, seconds: 10 },
      contended: { clients: 64, seconds: 10, warmupS: 2 },
      redis: { n: REDIS_COST.n, levels: REDIS_COST.levels, seconds: REDIS_COST.seconds, idleS: REDIS_COST.idleS },
      profileS: 15,
    };

// ---- output -------------------------------------------------------------------------------------

const started = Date.now();
const loadAtStart = os.loadavg();
const out = [];
const failures = [];
const timings = [];
const log = (s = '') => {
  console.log(s);
  out.push(s);
};
const status = (s) => console.error(`[${((Date.now() - started) / 1000).toFixed(0).padStart(4)} s] ${s}`);
const f1 = (v) => fmt(v, 1);
const f2 = (v) => fmt(v, 2);
const f3 = (v) => fmt(v, 3);
const int = (v) => (Number.isFinite(v) ? Math.round(v).toLocaleString('en') : 'n/a');
const pct = (v) => (Number.isFinite(v) ? `${(v * 100).toFixed(0)} %` : 'n/a');

async function section(name, fn) {
  if (stopping()) return;
  const t = Date.now();
  status(`${name}…`);
  try {
    await fn();
  } catch (err) {
    failures.push(`${name}: ${err.message}`);
    status(`${name} FAILED: ${err.stack ?? err.message}`);
  } finally {
    timings.push([name, (Date.now() - t) / 1000]);
  }
}

// Everything measured, for the tables and the targets.
const R = {
  latency: {}, // mode -> rows
  throughput: {}, // target name -> sweep
  cpuRatio: {}, // mode -> CPU per request ÷ the plain proxy's, adjacent windows (issue 14's goal)
  memory: {}, // mode -> { idle, peak, after, afterGc }
  ttft: {}, // mode -> rows
  burst: {}, // mode -> rows (TTFB at 32 concurrent streams)
  streams: {}, // mode -> ramp
  ladder: null,
  queue: {}, // mode -> result
  contended: {}, // mode -> result
  redis: null, // Redis cost per request (distributed, private redis-server)
  redisReal: null, // the same with the limits a real key has (REAL_LIMITS), c=1 only
  redisRealExact: null, // real limits with ADMISSION_GRANTS=off (the exact per-request admission), c=1 and c=8
  loop: {}, // phase -> gateway event-loop delay { p99, max } ms
  notes: [],
};

const json = { 'content-type': 'application/json' };
const relayTarget = (name, gw, clientKey) => ({
  name,
  url: gw.url,
  path: '/v1/chat/completions',
  headers: { ...json, authorization: `Bearer ${clientKey}` },
  pid: gw.pid,
});

// ---- run ----------------------------------------------------------------------------------------

installSignalHandlers();
// Bounded whatever happens: a hung phase ends the run (with cleanup) instead of hanging CI.
const LIMIT_S = (quick ? 240 : 900) + (on('profile') ? 120 : 0);
setTimeout(() => abort(124, `time limit of ${LIMIT_S} s reached`), LIMIT_S * 1000).unref();
rmSync(new URL('./out/logs/', import.meta.url), { recursive: true, force: true });
let upstream = null;
let plain = null;
let portkey = null;
try {
  const swept = await withTimeout(sweepStale(), 30_000, 'stale cleanup').catch((err) => {
    status(`stale cleanup skipped: ${err.message}`);
    return null;
  });
  if (swept && (swept.databases || swept.redisKeys))
    status(`removed leftovers of killed runs: ${swept.databases} databases, ${swept.redisKeys} Redis keys`);

  upstream = await startServer('upstream', { delayMs: 0 });
  plain = await startServer('plain', { upstreamUrl: upstream.url });
  const direct = { name: 'direct', url: upstream.url, path: '/v1/chat/completions', headers: { ...json, authorization: 'Bearer sk-direct' }, pid: upstream.pid };
  const plainT = { name: 'plain proxy', url: plain.url, path: '/v1/chat/completions', headers: json, pid: plain.pid };
  const perMode = on('latency') || on('throughput') || on('memory') || on('streaming');

  // The peer column: Portkey against the same fake upstream (x-bench-* = the probes' short streams).
  let portkeyT = null;
  if (withPeer && perMode) {
    await section('peer: Portkey install and start', async () => {
      try {
        portkey = await startPortkey(upstream.url);
        portkeyT = {
          name: 'portkey',
          url: portkey.url,
          path: '/v1/chat/completions',
          headers: { ...portkey.headers, 'x-bench-deltas': '2', 'x-bench-pace-ms': '5' },
          pid: portkey.pid,
        };
      } catch (err) {
        R.notes.push(`Portkey peer column skipped: ${err.message.split('\n')[0]}`);
        status(`Portkey peer column skipped: ${err.message}`);
      }
    });
  }
  const peers = [plainT, ...(portkeyT ? [portkeyT] : [])];
  if (on('memory')) {
    await sleep(2000);
    for (const p of peers) R.memory[p.name] = { idle: rssMB(p.pid) };
  }

  if (on('throughput') || on('memory')) {
    await section('throughput: baselines', async () => {
      if (on('throughput')) R.throughput.direct = await sweep(direct, C.throughput);
      const cfg = on('throughput') ? C.throughput : { levels: [64], durationS: C.throughput.durationS, warmupS: 0 };
      const samplers = [];
      for (const p of peers) {
        const sampler = rssSampler(p.pid);
        const result = await sweep(p, cfg);
        if (on('throughput')) R.throughput[p.name] = result;
        samplers.push([p, sampler.stop()]);
      }
      if (on('memory')) {
        await sleep(C.memoryAfterS * 1000);
        for (const [p, peak] of samplers) Object.assign(R.memory[p.name], { peak, after: rssMB(p.pid), afterGc: NaN });
      }
    });
  }

  for (const mode of perMode ? ['embedded', 'distributed'] : []) {
    if (stopping()) break;
    let gw = null;
    await section(`${mode}: start`, async () => {
      gw = await startGateway(mode, { name: 'main' });
    });
    if (!gw) continue;
    try {
      const { clientKey } = await configure(gw, upstream.url);
      const target = relayTarget(`floodgate (${mode})`, gw, clientKey);
      if (on('memory')) {
        // Idle = steady state: long enough for the gateway's idle collector (MEMORY_IDLE_GC_MS 5 s,
        // two passes) to have run after start-up and configuration.
        await sleep(C.memoryIdleS * 1000);
        R.memory[mode] = { idle: rssMB(gw.pid) };
      }
      if (on('latency')) {
        await section(`${mode}: added latency at c=1`, async () => {
          await loopDelay(gw);
          R.latency[mode] = await interleavedLatency([direct, ...peers, target], C.latency);
          R.loop[`${mode}: c=1 latency`] = await loopDelay(gw);
          const queued = await metricValue(gw, 'floodgate_queue_wait_seconds_sum');
          R.notes.push(`${mode}: queue wait total on the uncontended path = ${queued} s (the queue is never touched)`);
        });
      }
      if (on('throughput') || on('memory')) {
        await section(`${mode}: throughput`, async () => {
          const sampler = rssSampler(gw.pid);
          const cfg = on('throughput') ? C.throughput : { levels: [64], durationS: C.throughput.durationS, warmupS: 0 };
          await loopDelay(gw);
          const result = await sweep(target, cfg);
          R.loop[`${mode}: throughput sweep`] = await loopDelay(gw);
          if (on('throughput')) R.throughput[target.name] = result;
          const peak = sampler.stop();
          // Issue 14's CPU goal, measured next to the proxy rather than minutes after its sweep.
          if (on('throughput')) {
            R.cpuRatio[mode] = await interleavedCpuRatio(plainT, target, { ...C.cpuRatio, ours: [upstream.pid] });
            const q = R.cpuRatio[mode];
            status(`${mode}: CPU ÷ plain proxy, ${q.pairs.length} adjacent pairs: median ${f2(q.ratio)}× (${f2(q.lo)}–${f2(q.hi)}×), other tenants ${f2(q.otherCores)} cores`);
          }
          if (on('memory')) {
            R.memory[mode].peak = peak;
            await sleep(C.memoryAfterS * 1000);
            R.memory[mode].after = rssMB(gw.pid);
            await gw.gc();
            R.memory[mode].afterGc = rssMB(gw.pid);
          }
        });
      }
      if (on('streaming')) {
        await section(`${mode}: streaming`, async () => {
          await loopDelay(gw);
          R.ttft[mode] = await ttft([direct, ...peers, target], C.ttft);
          R.loop[`${mode}: TTFT probes`] = await loopDelay(gw);
          R.burst[mode] = await burstTtfb([direct, ...peers, target], C.burst);
          R.loop[`${mode}: TTFB at ${C.burst.streams} streams`] = await loopDelay(gw);
          R.streams[mode] = await concurrentStreams(target, direct, { ...C.streams, loopDelay: () => loopDelay(gw) });
        });
      }
    } catch (err) {
      failures.push(`${mode}: ${err.message}`);
      status(`${mode} FAILED: ${err.stack}`);
    } finally {
      await gw.stop();
      noteWarnings(`${mode} gateway (sections 1, 2, 4, 6)`, gw);
    }
  }
  // Distributed with ADMISSION_GRANTS=off (the exact per-request admission; local grants are the
  // default on a single Redis): the same sweep, a row of section 2 next to the default distributed
  // row, for comparison; issue 14's goals are on the default.
  if (on('throughput') && !stopping()) {
    await section('distributed (exact, grants off): throughput', async () => {
      const gw = await startGateway('distributed', { name: 'exact', env: { ADMISSION_GRANTS: 'off' } });
      try {
        const { clientKey } = await configure(gw, upstream.url);
        R.throughput['floodgate (distributed, ADMISSION_GRANTS=off)'] = await sweep(relayTarget('floodgate (distributed, ADMISSION_GRANTS=off)', gw, clientKey), C.throughput);
      } finally {
        await gw.stop();
        noteWarnings('distributed (ADMISSION_GRANTS=off) gateway (section 2)', gw);
      }
    });
  }

  if (on('ladder')) await section('feature ladder', () => ladder(direct));
  if (on('queue')) await section('queue under contention', () => queueSection());
  if (on('contended')) await section('contended closed loop', () => contendedSection());
  if (on('redis')) {
    await section('Redis cost per request', async () => {
      R.redis = await redisCost(upstream.url, C.redis);
      status(`Redis cost: ${R.redis.phases.map((p) => `${p.label} ${Math.round(p.cpuUs)} µs CPU/req`).join(', ')}`);
      R.redisReal = await redisCost(upstream.url, { idleS: C.redis.idleS, limits: 'real' });
      status(`Redis cost, real limits: c=1 ${Math.round(R.redisReal.phases[0].cpuUs)} µs CPU/req`);
      R.redisRealExact = await redisCost(upstream.url, { idleS: C.redis.idleS, limits: 'real', grants: 'off' });
      status(`Redis cost, real limits, ADMISSION_GRANTS=off: ${R.redisRealExact.phases.map((p) => `${p.label} ${Math.round(p.cpuUs)} µs CPU/req`).join(', ')}`);
    });
  }
  if (on('profile')) await section('profile', () => profile(upstream));
} finally {
  await portkey?.close();
  await plain?.close();
  await upstream?.close();
  await cleanupAll();
  closeRedis();
}

// ---- sections that need their own gateways -------------------------------------------------------

function noteWarnings(label, gw) {
  const w = gw.warnings().slice(0, 4);
  if (w.length) R.notes.push(`${label} logged: ${w.map(([m, n]) => `${n}× "${m}"`).join('; ')}`);
}

async function ladder(direct) {
  const rungs = [
    { name: '0 framework + relay forward (no auth)', disable: 'auth,ratelimit,keypool,metrics,requestlog' },
    { name: '1 auth only', disable: 'ratelimit,keypool,metrics,requestlog' },
    { name: '2 + rate limit', disable: 'keypool,metrics,requestlog' },
    { name: '3 + key pool / adaptive', disable: 'metrics,requestlog' },
    { name: '4 + metrics', disable: 'requestlog' },
    { name: '5 full (+ request log) = all features', disable: '' },
    { name: '6 full + LOG_LEVEL=info (one log line per request)', disable: '', env: { LOG_LEVEL: 'info' } },
  ];
  // --quick (smoke): the two ends of the issue's ladder only; the auth-only rung applies every switch
  // but one, so a patch that no longer fits the app still fails loudly.
  if (quick) rungs.splice(0, rungs.length, rungs[1], rungs[5]);
  const gws = await Promise.allSettled(
    rungs.map((r, i) => startGateway('distributed', { name: `ladder${i}`, env: { BENCH_DISABLE: r.disable, ...r.env } })),
  );
  try {
    const failed = gws.find((g) => g.status === 'rejected');
    if (failed) throw failed.reason;
    const targets = [];
    for (let i = 0; i < rungs.length; i++) {
      const gw = gws[i].value;
      const { clientKey } = await configure(gw, upstream.url);
      targets.push(relayTarget(rungs[i].name, gw, clientKey));
    }
    R.ladder = await blockLatency(direct, targets, C.ladder);
  } finally {
    await Promise.all(gws.filter((g) => g.status === 'fulfilled').map((g) => g.value.stop()));
  }
}

async function queueSection() {
  const slow = await startServer('upstream', { delayMs: 20, stats: true });
  try {
    for (const mode of quick ? ['distributed'] : ['embedded', 'distributed']) {
      const gw = await startGateway(mode, { name: 'queue', env: QUEUE_ENV });
      try {
        const { clientKey } = await configure(gw, slow.url, { keys: 1, maxConcurrent: 4 });
        // warm the path (JIT, connections) below capacity, then measure
        const pool = new Pool(gw.url, { connections: 2, headersTimeout: 10_000, bodyTimeout: 10_000 });
        for (let i = 0; i < 100; i++) {
          const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { ...json, authorization: `Bearer ${clientKey}` }, body: CHAT_BODY });
          await r.body.dump();
        }
        await pool.close();
        R.queue[mode] = { capacity: 4 / 0.02, ...(await contention(gw, slow, clientKey, C.queue)) };
      } finally {
        await gw.stop();
        noteWarnings(`queue (${mode}) gateway`, gw);
      }
    }
  } finally {
    await slow.close();
  }
}

async function contendedSection() {
  const slow = await startServer('upstream', { delayMs: CONTENDED.upstreamDelayMs, stats: true });
  try {
    // BENCH_CONTENDED_MODES=distributed (e.g.) narrows the section while working on it.
    const modes = (process.env.BENCH_CONTENDED_MODES ?? 'embedded,distributed').split(',');
    const instances = Number(process.env.BENCH_CONTENDED_INSTANCES ?? 2);
    // The reference, measured the same way against the same upstream: a plain proxy with a FIFO
    // semaphore of max_concurrent (what a perfect in-process hand-off gives on this machine now).
    const proxy = await startServer('plain', { upstreamUrl: slow.url, maxConcurrent: CONTENDED.maxConcurrent });
    try {
      R.contendedReference = await contendedClosedLoop([proxy], slow, 'unused', C.contended);
      status(`contended reference proxy: ${R.contendedReference.upstreamRate.toFixed(0)} req/s of ${R.contendedReference.capacity}`);
    } finally {
      await proxy.close();
    }
    for (const mode of modes) {
      const first = await startGateway(mode, { name: 'contended' });
      const gws = [first];
      try {
        const { clientKey } = await configure(first, slow.url, { keys: 1, maxConcurrent: CONTENDED.maxConcurrent });
        for (let i = 1; mode === 'distributed' && i < instances; i++) {
          gws.push(await startGateway(mode, { name: `contended${i + 1}`, join: first }));
        }
        R.contended[mode] = await contendedClosedLoop(gws, slow, clientKey, C.contended);
        status(`contended ${mode}: ${R.contended[mode].upstreamRate.toFixed(0)} req/s of ${R.contended[mode].capacity}`);
      } finally {
        // the joined instance first: the first one's stop drops the shared database and prefix
        for (const gw of gws.reverse()) {
          await gw.stop();
          noteWarnings(`contended (${mode}, ${gw.name}) gateway`, gw);
        }
      }
    }
  } finally {
    await slow.close();
  }
}

async function profile(up) {
  const dir = new URL('./out/prof/', import.meta.url).pathname;
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  const parts = [];
  for (const [label, connections, mode] of [
    ['c=1', 1, 'distributed'],
    ['c=64', 64, 'distributed'],
    ['embedded c=64', 64, 'embedded'],
  ]) {
    const file = `${label.replace(/[^a-z0-9]+/g, '-')}.cpuprofile`;
    const gw = await startGateway(mode, {
      name: `profile-${label.replace(/[^a-z0-9]+/g, '-')}`,
      nodeFlags: ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${file}`, '--cpu-prof-interval=200'],
    });
    try {
      const { clientKey } = await configure(gw, up.url);
      const pool = new Pool(gw.url, { connections, keepAliveTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 });
      for (let i = 0; i < 200; i++) {
        const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { ...json, authorization: `Bearer ${clientKey}` }, body: CHAT_BODY });
        await r.body.dump();
      }
      const fromUs = Number(process.hrtime.bigint() / 1000n);
      const end = Date.now() + C.profileS * 1000;
      let n = 0;
      await Promise.all(
        Array.from({ length: connections }, async () => {
          while (Date.now() < end) {
            const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers: { ...json, authorization: `Bearer ${clientKey}` }, body: CHAT_BODY });
            await r.body.dump();
            n++;
          }
        }),
      );
      const toUs = Number(process.hrtime.bigint() / 1000n);
      await pool.close();
      parts.push([label, n, fromUs, toUs, file]);
    } finally {
      await gw.stop();
    }
  }
  const md = [
    '# CPU profile of the relay hot path',
    '',
    `${new Date().toISOString()}, all features on (distributed unless the heading says embedded), \`node --cpu-prof --cpu-prof-interval=200\`, ${C.profileS} s of POST /v1/chat/completions against the instant fake upstream after 200 warm-up requests; only samples taken during the load phase count (start-up and shutdown cut out). "where" groups self time by npm package / src module / node core; (native/V8) is time in C++ builtins (socket writes, JSON, crypto…) called from JavaScript.`,
    '',
  ];
  for (const [label, n, fromUs, toUs, file] of parts) {
    if (!readdirSync(dir).includes(file)) throw new Error(`no profile written for ${label}`);
    const s = summarise(`${dir}${file}`, { top: 40, fromUs, toUs });
    s.requests = n;
    md.push(summaryMarkdown(s, `${label}: ${n.toLocaleString('en')} requests in ${C.profileS} s`, n));
    R.profile ??= {};
    R.profile[label] = s;
  }
  writeFileSync(new URL('./out/profile-summary.md', import.meta.url), md.join('\n'));
  status('wrote bench/out/profile-summary.md');
}

// ---- report -------------------------------------------------------------------------------------

// Interrupted: the signal handler finishes the cleanup and exits (130/143); report nothing.
if (stopping()) await new Promise(() => {});

const cpu = os.cpus();
const elapsedS = Math.round((Date.now() - started) / 1000);
const machine = `${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}`;
const loadNote = `load average ${loadAtStart[0].toFixed(2)} at start, ${os.loadavg()[0].toFixed(2)} at the end`;

const targets = [];
function target(name, measured, met) {
  targets.push({ name, measured, met });
}

// 0. the peer comparison (issue 14): one table, the baselines of the same run
const goals = [];
{
  const modes = ['embedded', 'distributed'];
  const cols = [
    { key: 'plain proxy', label: 'plain node proxy' },
    { key: 'portkey', label: `Portkey gateway ${PORTKEY_VERSION}` },
    { key: 'floodgate (embedded)', label: 'Floodgate embedded', mode: 'embedded' },
    { key: 'floodgate (distributed)', label: 'Floodgate distributed', mode: 'distributed' },
  ];
  const mean = (xs) => {
    const v = xs.filter(Number.isFinite);
    return v.length ? v.reduce((a, b) => a + b, 0) / v.length : NaN;
  };
  const at64 = (key) => R.throughput[key]?.levels.find((l) => l.connections === 64);
  // Peers are measured next to each mode (latency, streaming); their figure is the mean of those.
  const rowOf = (table, key, mode) => {
    const name = key.startsWith('floodgate') ? null : key;
    if (mode) return table[mode]?.find((r) => r.name.startsWith('floodgate'));
    const rows = modes.map((m) => table[m]?.find((r) => r.name === name)).filter(Boolean);
    return rows.length ? { addedP50: mean(rows.map((r) => r.addedP50)), addedP99: mean(rows.map((r) => r.addedP99)) } : undefined;
  };
  const v = {};
  for (const c of cols) {
    const mem = R.memory[c.mode ?? c.key];
    v[c.key] = {
      rps: at64(c.key)?.rps,
      cpu: at64(c.key)?.cpuUsPerReq,
      lat: rowOf(R.latency, c.key, c.mode),
      ttfb: rowOf(R.burst, c.key, c.mode),
      idle: mem?.idle,
      after: mem?.after,
    };
  }
  const present = cols.filter((c) => Object.values(v[c.key]).some((x) => x !== undefined && (typeof x !== 'number' || Number.isFinite(x))));
  if (present.length > 1) {
    const P = v['plain proxy'];
    const K = v.portkey;
    log('## 0. Side by side: plain proxy, Portkey, Floodgate (issue 14)');
    log('');
    log(
      `Same fake upstream (instant answers), same run. req/s and CPU at 64 connections (section 2's level; CPU = the serving process's user+system time ÷ requests); added latency at c=1 vs direct (section 1); streaming added TTFB p99 with ${C.burst.streams} streams started together vs direct (section 4); RSS idle and ${C.memoryAfterS} s after the load (section 6). Peers are measured next to each Floodgate mode; their latency and TTFB figures are the mean of the two. Ratios: ÷ the plain proxy / ÷ Portkey.`,
    );
    log('');
    log(`| | ${present.map((c) => c.label).join(' | ')} |`);
    log(`| --- |${present.map(() => ' ---: |').join('')}`);
    const ratio = (x, base) => (Number.isFinite(x) && Number.isFinite(base) && base !== 0 ? `${f2(x / base)}×` : 'n/a');
    const line = (label, cell) => log(`| ${label} | ${present.map((c) => cell(v[c.key], c)).join(' | ')} |`);
    line('req/s at 64 conns', (x) => int(x.rps));
    line('req/s ÷ plain / ÷ Portkey', (x, c) => (c.key === 'plain proxy' ? '1×' : `${ratio(x.rps, P.rps)} / ${c.key === 'portkey' ? '1×' : ratio(x.rps, K.rps)}`));
    line('CPU per request µs', (x) => int(x.cpu));
    line('CPU ÷ plain (single windows minutes apart)', (x) => ratio(x.cpu, P.cpu));
    line('CPU ÷ plain, adjacent windows (median of pairs; the goal)', (x, c) => (c.mode && R.cpuRatio[c.mode] ? `${f2(R.cpuRatio[c.mode].ratio)}×` : c.key === 'plain proxy' ? '1×' : '–'));
    line('added p50 / p99 at c=1 ms', (x) => (x.lat ? `${f2(x.lat.addedP50)} / ${f2(x.lat.addedP99)}` : 'n/a'));
    line(`streaming added TTFB p99, ${C.burst.streams} streams ms`, (x) => (x.ttfb ? f1(x.ttfb.addedP99) : 'n/a'));
    line('RSS idle MB', (x) => f1(x.idle));
    line(`RSS ${C.memoryAfterS} s after load MB`, (x) => (Number.isFinite(x.after) ? `${f1(x.after)} (${x.after >= x.idle ? '+' : ''}${pct((x.after - x.idle) / x.idle)})` : 'n/a'));
    log('');
    const goal = (name, measured, met) => goals.push({ name, measured, met });
    const D = v['floodgate (distributed)'];
    if (Number.isFinite(D.rps) && Number.isFinite(P.rps)) goal('distributed throughput ≥ 0.4× the plain proxy', ratio(D.rps, P.rps), D.rps / P.rps >= 0.4);
    if (Number.isFinite(D.rps) && Number.isFinite(K.rps)) goal('distributed throughput ≥ 4× Portkey', ratio(D.rps, K.rps), D.rps / K.rps >= 4);
    const X = at64('floodgate (distributed, ADMISSION_GRANTS=off)');
    if (X && Number.isFinite(P.rps))
      log(`For comparison (not a goal), distributed with ADMISSION_GRANTS=off (the exact per-request admission): ${ratio(X.rps, P.rps)} the plain proxy${Number.isFinite(K.rps) ? `, ${ratio(X.rps, K.rps)} Portkey` : ''}, CPU ${int(X.cpuUsPerReq)} µs = ${ratio(X.cpuUsPerReq, P.cpu)} (single window).`);
      log('');
    for (const m of modes) {
      const F = v[`floodgate (${m})`];
      // The goal's figure: adjacent proxy/gateway windows (R.cpuRatio), not the sweep's single windows
      // minutes apart; the sweep's figure only when the pairs were not measured.
      const Q = R.cpuRatio[m];
      if (Q && Number.isFinite(Q.ratio))
        goal(`CPU per request ≤ 3× the plain proxy (${m})`, `${int(Q.cpu)} µs ÷ ${int(Q.ref)} µs: ${f2(Q.ratio)}× (median of ${Q.pairs.length} adjacent pairs, ${f2(Q.lo)}–${f2(Q.hi)}×)`, Q.ratio <= 3);
      else if (Number.isFinite(F.cpu) && Number.isFinite(P.cpu)) goal(`CPU per request ≤ 3× the plain proxy (${m})`, `${int(F.cpu)} µs = ${ratio(F.cpu, P.cpu)}`, F.cpu / P.cpu <= 3);
      if (F.lat && P.lat) goal(`added p50 at c=1 ≤ plain proxy's + 0.3 ms (${m})`, `${f2(F.lat.addedP50)} vs ${f2(P.lat.addedP50)} + 0.3 ms`, F.lat.addedP50 <= P.lat.addedP50 + 0.3);
      if (F.ttfb && P.ttfb) goal(`streaming added TTFB p99 at ${C.burst.streams} streams ≤ plain proxy's + 10 ms (${m})`, `${f1(F.ttfb.addedP99)} vs ${f1(P.ttfb.addedP99)} + 10 ms`, F.ttfb.addedP99 <= P.ttfb.addedP99 + 10);
      const cap = m === 'embedded' ? 250 : 150;
      if (Number.isFinite(F.idle)) goal(`RSS idle ≤ ${cap} MB (${m})`, `${f1(F.idle)} MB`, F.idle <= cap);
      if (Number.isFinite(F.after) && Number.isFinite(F.idle)) goal(`RSS back within 10 % of idle after load (${m})`, `${f1(F.idle)} → ${f1(F.after)} MB (${pct((F.after - F.idle) / F.idle)})`, F.after <= F.idle * 1.1);
    }
  }
}

// 1. latency
if (Object.keys(R.latency).length) {
  log('## 1. Added latency at concurrency 1 (non-streaming, all features on)');
  log('');
  log('Median of per-round p50/p99, requests to each target interleaved in rounds. ms.');
  log('');
  log('| mode | target | p50 | p99 | added p50 vs direct | added p99 vs direct | added p50 ÷ plain proxy\'s |');
  log('| --- | --- | ---: | ---: | ---: | ---: | ---: |');
  for (const [mode, rows] of Object.entries(R.latency)) {
    const plainRow = rows.find((r) => r.name === 'plain proxy');
    for (const r of rows) {
      if (r.name === 'direct') {
        log(`| ${mode} | direct | ${f3(r.p50)} | ${f3(r.p99)} | – | – | – |`);
        continue;
      }
      const ratio = r.name === 'plain proxy' ? '1.0×' : `${f1(r.addedP50 / plainRow.addedP50)}×`;
      log(`| ${mode} | ${r.name} | ${f3(r.p50)} | ${f3(r.p99)} | ${f3(r.addedP50)} | ${f3(r.addedP99)} | ${ratio} |`);
    }
  }
  log('');
  const d = R.latency.distributed?.find((r) => r.name.startsWith('floodgate'));
  if (d) {
    target('added p50 ≤ 0.4 ms at c=1 (distributed)', `${f3(d.addedP50)} ms`, d.addedP50 <= 0.4);
    target('added p99 ≤ 1.5 ms at c=1 (distributed)', `${f3(d.addedP99)} ms`, d.addedP99 <= 1.5);
  }
}

// 2. throughput
if (Object.keys(R.throughput).length) {
  log('## 2. Throughput (autocannon sweep, non-streaming, instant upstream)');
  log('');
  log(
    `${C.throughput.durationS} s per level after a ${C.throughput.warmupS} s warm-up. "best" = most req/s at a level with p99 < ${P99_LIMIT_MS} ms and no errors/non-2xx. CPU = user+system time of the process serving the target (direct: the fake upstream; plain proxy: the proxy; floodgate: the gateway) per request.`,
  );
  log('');
  const plainBest = R.throughput['plain proxy']?.best;
  log('| target | best req/s | at conns | p99 ms | CPU µs/req | req/s vs plain proxy | CPU vs plain proxy |');
  log('| --- | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const s of Object.values(R.throughput)) {
    const b = s.best;
    if (!b) {
      log(`| ${s.name} | none met p99 < ${P99_LIMIT_MS} ms with 0 errors | | | | | |`);
      continue;
    }
    log(
      `| ${s.name} | ${int(b.rps)} | ${b.connections} | ${f1(b.p99)} | ${int(b.cpuUsPerReq)} | ${plainBest ? pct(b.rps / plainBest.rps) : 'n/a'} | ${plainBest ? `${f2(b.cpuUsPerReq / plainBest.cpuUsPerReq)}×` : 'n/a'} |`,
    );
  }
  log('');
  log('<details><summary>every level</summary>');
  log('');
  log('| target | conns | req/s | p50 ms | p99 ms | errors | non-2xx | CPU µs/req |');
  log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const s of Object.values(R.throughput)) {
    for (const l of s.levels) log(`| ${s.name} | ${l.connections} | ${int(l.rps)} | ${f1(l.p50)} | ${f1(l.p99)} | ${l.errors} | ${l.non2xx} | ${int(l.cpuUsPerReq)} |`);
  }
  log('');
  log('</details>');
  log('');
  if (Object.keys(R.cpuRatio).length) {
    const q0 = Object.values(R.cpuRatio)[0];
    log(
      `**CPU per request ÷ the plain proxy's, adjacent windows** (issue 14's goal): right after each mode's sweep, ${q0.pairs.length} pairs of ${C.cpuRatio.durationS}-s windows at 64 connections, one on the proxy and one on the gateway, the order flipping every pair; each pair gives a ratio, the figure is their median. The sweep's own c=64 figures above are single windows taken minutes apart, and on a shared machine they move a gateway's ratio by up to 2× from run to run (docs/performance.md, "Embedded CPU figure: variance"). "other tenants" = CPU the machine spent outside this bench, its fake upstream and the measured process during the windows (median, cores of 2): the ratio rises with it (a gateway's CPU per request inflates under contention, the proxy's much less).`,
    );
    log('');
    log('| mode | proxy µs/req (median) | gateway µs/req (median) | ratio, median of pairs | lowest–highest pair | per pair (other tenants, cores) | other tenants, cores (median) |');
    log('| --- | ---: | ---: | ---: | ---: | --- | ---: |');
    for (const [mode, q] of Object.entries(R.cpuRatio)) {
      log(`| ${mode} | ${int(q.ref)} | ${int(q.cpu)} | **${f2(q.ratio)}×** | ${f2(q.lo)}–${f2(q.hi)}× | ${q.pairs.map((p) => `${f2(p.ratio)} (${f1(p.otherCores)})`).join(', ')} | ${f2(q.otherCores)} |`);
    }
    log('');
  }
  for (const mode of ['embedded', 'distributed']) {
    const s = R.throughput[`floodgate (${mode})`];
    if (!s) continue;
    const rps = s.best?.rps ?? 0;
    target(`≥ 5k req/s (${mode})`, `${int(rps)} req/s`, rps >= 5000);
    if (plainBest) target(`≥ 50 % of the plain proxy's req/s (${mode})`, pct(rps / plainBest.rps), rps / plainBest.rps >= 0.5);
  }
}

// 3. ladder
if (R.ladder) {
  log('## 3. Feature ladder (distributed, added latency at c=1 vs direct)');
  log('');
  log(
    `One gateway process per rung, all started together. Each round gives every rung in turn (rotating order) a block of ${C.ladder.perRound} requests alternating with requests to the direct baseline; added = rung − direct within the block; medians over ${C.ladder.rounds} rounds. Features are switched off with bench/lib/gateway-preload.mjs (src/ untouched); what each switch removes: docs/performance.md. "step" = this rung minus the previous one.`,
  );
  log('');
  log('| rung | p50 ms | p99 ms | direct p50 / p99 in its blocks | added p50 | added p99 | step p50 | step p99 |');
  log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  let prev = null;
  for (const r of R.ladder) {
    const step = prev && !r.name.startsWith('0') ? [f3(r.addedP50 - prev.addedP50), f3(r.addedP99 - prev.addedP99)] : ['–', '–'];
    log(`| ${r.name} | ${f3(r.p50)} | ${f3(r.p99)} | ${f3(r.baseP50)} / ${f3(r.baseP99)} | ${f3(r.addedP50)} | ${f3(r.addedP99)} | ${step[0]} | ${step[1]} |`);
    prev = r;
  }
  log('');
}

// 4. streaming
if (Object.keys(R.ttft).length) {
  log('## 4. Streaming (SSE)');
  log('');
  log(`Time to first token: ${C.ttft.rounds} rounds × ${C.ttft.perRound} sequential probes per target, interleaved; hrtime from sending to the first byte of the first \`data:\` event; median of per-round p50/p99. ms.`);
  log('');
  log('| mode | target | TTFT p50 | TTFT p99 | added p50 | added p99 |');
  log('| --- | --- | ---: | ---: | ---: | ---: |');
  for (const [mode, rows] of Object.entries(R.ttft)) {
    for (const r of rows) {
      if (r.name === 'direct') log(`| ${mode} | direct | ${f3(r.p50)} | ${f3(r.p99)} | – | – |`);
      else log(`| ${mode} | ${r.name} | ${f3(r.p50)} | ${f3(r.p99)} | ${f3(r.addedP50)} | ${f3(r.addedP99)} |`);
    }
    const g = rows.find((r) => r.name.startsWith('floodgate'));
    if (g) target(`added TTFT p99 ≤ 2 ms (${mode})`, `${f3(g.addedP99)} ms`, g.addedP99 <= 2);
  }
  log('');
  if (Object.keys(R.burst).length) {
    log(
      `Time to first byte with ${C.burst.streams} streams started together: ${C.burst.rounds} rounds; in each, every target in turn (rotating order) gets ${C.burst.streams} short streams at once over ${C.burst.streams} keep-alive connections; per round p50/p99 of the ${C.burst.streams} TTFBs, median over rounds. ms.`,
    );
    log('');
    log('| mode | target | TTFB p50 | TTFB p99 | added p50 | added p99 |');
    log('| --- | --- | ---: | ---: | ---: | ---: |');
    for (const [mode, rows] of Object.entries(R.burst)) {
      for (const r of rows) {
        if (r.name === 'direct') log(`| ${mode} | direct | ${f2(r.p50)} | ${f2(r.p99)} | – | – |`);
        else log(`| ${mode} | ${r.name} | ${f2(r.p50)} | ${f2(r.p99)} | ${f2(r.addedP50)} | ${f2(r.addedP99)} |`);
      }
    }
    log('');
  }
  const anyRamp = Object.values(R.streams)[0];
  if (anyRamp) {
    log(
      `Concurrent paced streams (64 deltas × 20 ms), started over 500 ms; a stall = a gap > ${anyRamp.stallMs} ms (request → first event, or between chunks), an error, or a short stream. A level where the gateway stalls is run once more ("retry"); it counts as failed only if the retry stalls too. "loop max" = the gateway's longest event-loop delay during the level.`,
    );
    log('');
    log('| mode | streams | floodgate stalled | TTFT p99 ms | max gap ms | loop max ms | retry: stalled / max gap ms | direct stalled | direct max gap ms | first error |');
    log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
    for (const [mode, ramp] of Object.entries(R.streams)) {
      for (const l of ramp.levels) {
        const retry = l.retry ? `${l.retry.stalled} / ${f1(l.retry.maxGap)}` : '–';
        log(
          `| ${mode} | ${l.n} | ${l.gateway.stalled} | ${f1(l.gateway.ttftP99)} | ${f1(l.gateway.maxGap)} | ${f1(l.gateway.loopMax)} | ${retry} | ${l.direct.stalled} | ${f1(l.direct.maxGap)} | ${l.gateway.firstError ?? l.direct.firstError ?? ''} |`,
        );
      }
    }
    log('');
    for (const [mode, ramp] of Object.entries(R.streams)) {
      const last = ramp.levels[ramp.levels.length - 1];
      const capped = last && last.gateway.stalled === 0 ? ` (not reached: the ramp stopped at ${last.n}, its ${quick ? 'quick-mode' : 'time'} limit)` : '';
      log(`- ${mode}: **${ramp.maxGateway} concurrent streams with no stall**${capped}; direct to the upstream: ${ramp.maxDirect} at the levels tried.`);
    }
    log('');
  }
}

// 5. queue
if (Object.keys(R.queue).length) {
  log('## 5. Queue under contention');
  log('');
  const q0 = Object.values(R.queue)[0];
  log(
    `Open-loop ${C.queue.rate} req/s for ${C.queue.seconds} s (10 % urgent, 20 % high, 40 % normal, 30 % low) at one upstream key with max_concurrent 4 in front of a 20 ms upstream (capacity ≈ ${q0.capacity} req/s). QUEUE_MAX_PER_PROVIDER ${QUEUE_ENV.QUEUE_MAX_PER_PROVIDER}, wait timeouts urgent/high/normal/low ${QUEUE_ENV.QUEUE_TIMEOUT_URGENT_MS}/${QUEUE_ENV.QUEUE_TIMEOUT_HIGH_MS}/${QUEUE_ENV.QUEUE_TIMEOUT_NORMAL_MS}/${QUEUE_ENV.QUEUE_TIMEOUT_LOW_MS} ms. Dispatch hand-off = upstream slot freed → next request arrives at the upstream (the dispatcher's own latency; see docs/performance.md).`,
  );
  log('');
  log('| mode | offered req/s | gateway CPU | dispatch hand-off p50 ms | hand-off p99 ms | served | 429 queue timeout | 503 queue full | other |');
  log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |');
  for (const [mode, q] of Object.entries(R.queue)) {
    log(
      `| ${mode} | ${int(q.offeredRate)} | ${pct(q.gatewayCpu)} of a core | ${f2(q.handoff.p50)} | ${f2(q.handoff.p99)} | ${q.outcomes.served} | ${q.outcomes.queue_timeout} | ${q.outcomes.queue_full} | ${q.outcomes.other}${Object.keys(q.other).length ? ` (${Object.entries(q.other).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} |`,
    );
  }
  log('');
  log('Queue wait (enqueue → grant, x-floodgate-queue-ms of served requests; includes waiting for capacity), ms:');
  log('');
  log('| mode | urgent p50 / p99 (n) | high | normal | low | mean from /metrics |');
  log('| --- | --- | --- | --- | --- | ---: |');
  for (const [mode, q] of Object.entries(R.queue)) {
    const cell = (p) => {
      const b = q.byPriority[p];
      return b.n ? `${int(b.p50)} / ${int(b.p99)} (${b.n})` : '– (0)';
    };
    log(`| ${mode} | ${cell('urgent')} | ${cell('high')} | ${cell('normal')} | ${cell('low')} | ${f1(q.metricsMeanMs)} (${q.metricsCount} obs.) |`);
  }
  log('');
  for (const [mode, q] of Object.entries(R.queue)) {
    target(`dispatch p50 ≤ 1 ms (${mode})`, `${f2(q.handoff.p50)} ms`, q.handoff.p50 <= 1);
    target(`dispatch p99 ≤ 10 ms (${mode})`, `${f2(q.handoff.p99)} ms`, q.handoff.p99 <= 10);
    if (q.lateMs > 50) R.notes.push(`queue (${mode}): the load generator fell up to ${int(q.lateMs)} ms behind its schedule`);
  }
}

// 5b. contended closed loop
if (Object.keys(R.contended).length) {
  log('## 5b. Contended path at the upstream\'s pace');
  log('');
  log(
    `Closed loop: ${C.contended.clients} clients, each sending its next request when the last is answered, for ${C.contended.seconds} s (after ${C.contended.warmupS} s of warm-up), at one upstream key with max_concurrent ${CONTENDED.maxConcurrent} in front of a ${CONTENDED.upstreamDelayMs} ms upstream (capacity ${CONTENDED.maxConcurrent / (CONTENDED.upstreamDelayMs / 1000)} req/s). Distributed = two instances of one cluster, clients split evenly. Hand-off = upstream slot freed → next request arrives at the upstream.`,
  );
  log('');
  const ref = R.contendedReference;
  if (ref)
    log(
      `Reference: a plain node proxy with a FIFO semaphore of ${CONTENDED.maxConcurrent} (the slot passes to the next waiter as soon as a response is read), measured the same way in the same run; "of reference" = the mode's share ÷ the reference's.`,
    );
  log('');
  log('| mode | instances | upstream served req/s | of capacity | of reference | gateway 200s req/s | hand-off p50 ms | hand-off p99 ms | gateway CPU per served request | gateway CPU | other answers |');
  log('| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  const rows = [...(ref ? [['reference proxy', ref]] : []), ...Object.entries(R.contended)];
  for (const [mode, q] of rows) {
    log(
      `| ${mode} | ${q.instances} | ${int(q.upstreamRate)} | ${pct(q.share)} | ${ref ? pct(q.share / ref.share) : '–'} | ${int(q.servedRate)} | ${f2(q.handoff.p50)} | ${f2(q.handoff.p99)} | ${int(q.cpuPerServedUs)} µs | ${f2(q.gatewayCores)} cores | ${q.outcomes.other}${Object.keys(q.other).length ? ` (${Object.entries(q.other).map(([k, v]) => `${k}: ${v}`).join(', ')})` : ''} |`,
    );
  }
  log('');
  for (const [mode, q] of Object.entries(R.contended)) {
    target(`contended ≥ 90 % of capacity (${mode}, ${q.instances} instance${q.instances > 1 ? 's' : ''})`, pct(q.share), q.share >= 0.9);
    // issue 14's goal list has it too ("contended: ≥ 90 % of the upstream's capacity served, in both modes")
    goals.push({ name: `contended ≥ 90 % of the upstream's capacity (${mode}, ${q.instances} instance${q.instances > 1 ? 's' : ''}; §5b)`, measured: `${pct(q.share)} (hand-off p50 ${f2(q.handoff.p50)} ms)`, met: q.share >= 0.9 });
  }
  if (ref) log(`Reference proxy in this run: ${pct(ref.share)} of capacity.`);
}

// 5c. Redis cost per request
if (R.redis) {
  log('## 5c. Redis cost per relayed request (distributed, issue 18)');
  log('');
  log(
    `One gateway instance against a private redis-server (started for this section on a free port, so no other tenant's commands are counted), ${REDIS_COST.keys} fixed-concurrency keys, instant upstream. c=1: ${C.redis.n} sequential requests; c=K: K closed-loop clients for ${C.redis.seconds} s. Deltas of INFO commandstats and INFO cpu (used_cpu_user + used_cpu_sys) over each phase, minus the idle rate measured for ${C.redis.idleS} s before (Redis' cron and the gateway's periodic steps). A script's EVALSHA µs include the commands it runs. Ceiling = 1 Redis core ÷ Redis CPU per request: the most relayed requests per second a whole fleet of gateways can push through one Redis. Under load, answers that arrive while Adaptive's report runs may be coalesced, so EVALSHA per request can drop below the uncontended figure.`,
  );
  log('');
  for (const line of redisCostMarkdown({ distributed: R.redis })) log(line);
  const c1 = R.redis.phases[0];
  if (c1) log(`Fleet ceiling (uncontended cost): **${int(c1.ceiling)} relayed req/s per Redis core** (${int(c1.cpuUs)} µs Redis CPU per request).`);
  log('');
  if (R.redisReal) {
    const L = REAL_LIMITS;
    log(
      `**With the limits a real key has** (issue 18's goal is stated for these): client key ${L.clientLimits.rpm} rpm (exact sliding log) and ${int(L.clientLimits.tpm)} tpm (token budget), its user ${L.env.RATE_LIMIT_USER_RPM} rpm (sub-buckets), its IP ${L.env.RATE_LIMIT_IP_RPM} rpm (exact log), each upstream key ${L.keyLimits.max_rpm} rpm (exact log) and ${int(L.keyLimits.max_tpm)} tpm (sub-buckets), plus the concurrency lease and the retreat gate; ${L.warmup} warm-up requests, then ${L.n} sequential ones (no load levels: they would reach the limits).`,
    );
    log('');
    for (const line of redisCostMarkdown({ 'distributed, real limits': R.redisReal })) log(line);
  }
  if (R.redisRealExact) {
    log('');
    log(
      '**The same with `ADMISSION_GRANTS=off`** (the exact per-request admission; the default on a single Redis is local admission grants, docs/scaling.md "Local admission grants": the admission takes blocks of units and the instance admits and releases the rest locally; never over a limit, under-admission ≤ instances × block for ≤ 1 s). c=1 and c=8 phases of fixed counts, the c=8 phase on a second client key with the same limits.',
    );
    log('');
    for (const line of redisCostMarkdown({ 'distributed, real limits, ADMISSION_GRANTS=off': R.redisRealExact })) log(line);
  }
  const goal = R.redisReal?.phases[0] ?? c1;
  if (goal) target(`Redis CPU ≤ 40 µs per uncontended relayed request${R.redisReal ? ', real limits' : ''}, default configuration (issue 18)`, `${int(goal.cpuUs)} µs`, goal.cpuUs <= 40);
  const exact = R.redisRealExact?.phases[0];
  if (exact) log(`For comparison (not a goal): with ADMISSION_GRANTS=off, ${int(exact.cpuUs)} µs of Redis CPU per uncontended request, real limits.`);
  log('');
}

// 6. memory
if (Object.keys(R.memory).length) {
  log('## 6. Memory (RSS of the gateway process, MB = 10⁶ bytes)');
  log('');
  log(`Idle = ${C.memoryIdleS} s after start and configuration (the steady state: the idle collector, MEMORY_IDLE_GC_MS, has run); load = peak during the throughput sweep (sampled every 200 ms); after = ${C.memoryAfterS} s after the load, then after a forced full GC (--expose-gc, SIGUSR2 hook in the bench preload).`);
  log('');
  log('| mode | idle | under load (peak) | after load | after load + GC |');
  log('| --- | ---: | ---: | ---: | ---: |');
  for (const [mode, m] of Object.entries(R.memory)) log(`| ${mode} | ${f1(m.idle)} | ${f1(m.peak)} | ${f1(m.after)} | ${f1(m.afterGc)} |`);
  log('');
  for (const [mode, m] of Object.entries(R.memory)) {
    if (mode !== 'embedded' && mode !== 'distributed') continue;
    target(`RSS idle ≤ 150 MB (${mode})`, `${f1(m.idle)} MB`, m.idle <= 150);
    if (Number.isFinite(m.peak)) target(`RSS under load ≤ 300 MB (${mode})`, `${f1(m.peak)} MB`, m.peak <= 300);
  }
}

// profile
if (R.profile) {
  log('## CPU profile (relay hot path, distributed, c=1)');
  log('');
  const s = R.profile['c=1'];
  log('| function | file:line | self % of busy |');
  log('| --- | --- | ---: |');
  for (const fn of s.functions.slice(0, 15)) log(`| \`${fn.fn}\` | ${fn.url ? `${fn.url}:${fn.line}` : '(V8)'} | ${fn.pct.toFixed(1)} |`);
  log('');
  log('Full summary (by package and function; distributed c=1 and c=64, embedded c=64): bench/out/profile-summary.md.');
  log('');
}

if (Object.keys(R.loop).length) {
  log('## Gateway event-loop delay during the phases');
  log('');
  log('From the gateway\'s own /metrics (nodejs_eventloop_lag_*: a 10 ms timer\'s lateness, the 10 ms subtracted), reset before each phase. A max far above the p99 = the loop was blocked now and then (a long synchronous task or a GC pause), which a request arriving meanwhile pays in full.');
  log('');
  log('| phase | p99 ms | max ms |');
  log('| --- | ---: | ---: |');
  for (const [phase, d] of Object.entries(R.loop)) log(`| ${phase} | ${f1(d.p99)} | ${f1(d.max)} |`);
  log('');
}

if (R.notes.length) {
  log('## Notes');
  log('');
  for (const n of R.notes) log(`- ${n}`);
  log('');
}

// targets
const targetLines = [];
if (goals.length) {
  targetLines.push(`## Issue 14 goals: ${goals.filter((g) => g.met).length} of ${goals.length} met`);
  targetLines.push('');
  targetLines.push('| goal | measured | |');
  targetLines.push('| --- | ---: | --- |');
  for (const g of goals) targetLines.push(`| ${g.name} | ${g.measured} | ${g.met ? 'met' : '**missed**'} |`);
  targetLines.push('');
}
if (targets.length) {
  targetLines.push('## Targets (issue 9; goals, not tests)');
  targetLines.push('');
  targetLines.push('| target | measured | |');
  targetLines.push('| --- | ---: | --- |');
  for (const t of targets) targetLines.push(`| ${t.name} | ${t.measured} | ${t.met ? 'met' : '**missed**'} |`);
  targetLines.push('');
}
for (const l of targetLines) console.log(l);
if (failures.length) {
  log('## Failures');
  log('');
  for (const f of failures) log(`- ${f}`);
  log('');
}
const timingLine = `Section times: ${timings.map(([n, s]) => `${n} ${s.toFixed(0)} s`).join(', ')}.`;
console.log(timingLine);

if (write) {
  const header = [
    '# Benchmark results',
    '',
    `Date: ${new Date().toISOString()}  `,
    `Machine: ${machine}; ${loadNote}  `,
    `Load generator, fake upstream, plain proxy, gateway, Postgres and Redis all on this machine (127.0.0.1). Run: \`${quick ? 'node bench/run.mjs --quick' : 'npm run bench'}${onlyArg ? ` -- --only ${onlyArg}` : ''}\` (${elapsedS} s). Numbers are ratios against baselines measured in the same run; absolute values move with the machine's load.`,
    '',
  ];
  // Only a full run replaces the committed bench/RESULTS.md; --quick / --only runs go to bench/out/.
  const partial = quick || onlyArg;
  const dest = partial ? './out/RESULTS.md' : './RESULTS.md';
  mkdirSync(new URL('./out/', import.meta.url), { recursive: true });
  // "Where the CPU goes" (bench/profile-ab.mjs) and "Where the Redis time goes" (bench/probes/script-variants.mjs),
  // written by hand, are carried over from the file they replace.
  let kept = [];
  try {
    const previous = readFileSync(new URL('./RESULTS.md', import.meta.url), 'utf8');
    for (const heading of ['\n## Where the Redis time goes', '\n## Where the CPU goes']) {
      const at = previous.indexOf(heading);
      if (at === -1) continue;
      const ends = ['\n## ', '\nSection times:'].map((m) => previous.indexOf(m, at + 1)).filter((i) => i !== -1);
      kept.push(previous.slice(at + 1, ends.length ? Math.min(...ends) : undefined).trimEnd(), '');
    }
  } catch {
    // no previous results
  }
  writeFileSync(new URL(dest, import.meta.url), [...header, ...targetLines, ...out, ...kept, timingLine, ''].join('\n'));
  console.log(`\nwrote bench/${dest.slice(2)}`);
}
console.log(`bench finished in ${elapsedS} s${failures.length ? ` with ${failures.length} failure(s)` : ''}`);
process.exit(failures.length ? 1 : 0);
