#!/usr/bin/env node
// CPU profile of an uncontended relayed request, attributed to the layers it passes through.
// Starts one gateway (--cpu-prof), configures it against the instant fake upstream, warms up, then
// drives POST /v1/chat/completions (non-stream) at a fixed concurrency for --seconds and prints:
//   - "where": each sample goes to the innermost frame of its stack that belongs to a layer
//     (Nest, Fastify, pino, prom-client, OpenTelemetry, undici, auth, rate limit, admission,
//     request log/accounting, relay, …); native builtins (JSON, crypto, socket writes) to the layer
//     that called them; a stack with no layer is node core (HTTP parsing, socket I/O);
//   - "total": share of samples with the layer anywhere on the stack (overlaps);
//   - the top self-time functions.
//
//   npm run build && node bench/profile.mjs [--mode distributed|embedded] [--c 16] [--seconds 10]
//                                           [--entry dist/src/main.js] [--env KEY=VALUE]… [--keep]
//                                           [--stream]  (short SSE streams, as the streaming TTFB burst sends)
import { mkdirSync, readFileSync, rmSync } from 'node:fs';
import { Pool } from 'undici';
import { summarise } from './lib/cpuprofile.mjs';
import { layerOf, perfAttribution } from './lib/layers.mjs';
import { closeRedis, configure, startGateway } from './lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer } from './lib/procs.mjs';
import { CHAT_BODY } from './sections/throughput.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const mode = arg('mode', 'distributed');
const connections = Number(arg('c', 16));
const seconds = Number(arg('seconds', 10));
const entry = arg('entry', 'dist/src/main.js');
const usePerf = argv.includes('--perf');
const env = Object.fromEntries(argv.flatMap((a, i) => (argv[i - 1] === '--env' ? [a.split(/=(.*)/s).slice(0, 2)] : [])));

installSignalHandlers();
const dir = new URL('./out/prof/', import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
const file = `profile-${mode}-c${connections}-${process.pid}.cpuprofile`;
rmSync(`${dir}${file}`, { force: true });
const upstream = await startServer('upstream', { delayMs: 0 });
let n = 0;
let perfFile = '';
let fromUs = 0;
let toUs = 0;
try {
  const gw = await startGateway(mode, {
    name: `profile-${mode}`,
    entry,
    env,
    nodeFlags: usePerf
      ? ['--perf-basic-prof-only-functions', '--interpreted-frames-native-stack']
      : ['--cpu-prof', `--cpu-prof-dir=${dir}`, `--cpu-prof-name=${file}`, '--cpu-prof-interval=100'],
  });
  try {
    const { clientKey } = await configure(gw, upstream.url);
    const pool = new Pool(gw.url, { connections, keepAliveTimeout: 60_000 });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
    const body = argv.includes('--stream')
      ? JSON.stringify({ ...JSON.parse(CHAT_BODY), stream: true, bench_deltas: 2, bench_pace_ms: 5 })
      : CHAT_BODY;
    const one = async () => {
      const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body });
      await r.body.dump();
      if (r.statusCode !== 200) throw new Error(`status ${r.statusCode}`);
    };
    const warmEnd = Date.now() + Number(arg('warm', 10)) * 1000;
    await Promise.all(Array.from({ length: connections }, async () => { while (Date.now() < warmEnd) await one(); }));
    let perf = null;
    perfFile = `${dir}perf-${process.pid}.data`;
    if (usePerf) {
      const { spawn } = await import('node:child_process');
      perf = spawn('perf', ['record', '-e', 'cpu-clock', '-c', '250000', '-g', '-o', perfFile, '-p', String(gw.pid)], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 1000));
    }
    let strace = null;
    if (argv.includes('--strace')) {
      const { spawn } = await import('node:child_process');
      strace = spawn('strace', ['-f', '-c', '-o', `${dir}strace-${process.pid}.txt`, '-p', String(gw.pid)], { stdio: 'ignore' });
      await new Promise((r) => setTimeout(r, 1000));
    }
    fromUs = Number(process.hrtime.bigint() / 1000n);
    const end = Date.now() + seconds * 1000;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < end) {
          await one();
          n++;
        }
      }),
    );
    toUs = Number(process.hrtime.bigint() / 1000n);
    if (perf) {
      perf.kill('SIGINT');
      await new Promise((r) => perf.once('exit', r));
    }
    if (strace) {
      strace.kill('SIGINT');
      await new Promise((r) => strace.once('exit', r));
      console.log(`syscalls during ${n} requests:\n${readFileSync(`${dir}strace-${process.pid}.txt`, 'utf8')}`);
    }
    await pool.close();
  } finally {
    await gw.stop();
  }
} finally {
  await upstream.close();
  await cleanupAll();
  closeRedis();
}

if (usePerf) {
  const a = perfAttribution(perfFile);
  const hz = 4000;
  const us = (k) => (1e6 * k) / hz / n;
  console.log(`\n${mode}, c=${connections}, ${seconds} s: ${n.toLocaleString('en')} requests, ${(n / seconds).toFixed(0)} req/s; perf cpu-clock, all threads: ${us(a.samples).toFixed(0)} µs CPU per request (main thread ${us(a.threads.get(a.main)).toFixed(0)})\n`);
  console.log('| layer | self µs/req | self % | total µs/req |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const [k, c] of [...a.byLayer.entries()].sort((x, y) => y[1] - x[1])) {
    console.log(`| ${k} | ${us(c).toFixed(0)} | ${((100 * c) / a.samples).toFixed(1)} | ${a.byLayerTotal.has(k) ? us(a.byLayerTotal.get(k)).toFixed(0) : ''} |`);
  }
  if (!argv.includes('--keep')) rmSync(perfFile, { force: true });
  process.exit(0);
}
const path = `${dir}${file}`;
const profile = JSON.parse(readFileSync(path, 'utf8'));
const byId = new Map(profile.nodes.map((x) => [x.id, x]));
const parent = new Map();
for (const x of profile.nodes) for (const c of x.children ?? []) parent.set(c, x.id);
const memo = new Map();
/** [innermost layer, set of layers on the stack] of a node. */
const layersOf = (id) => {
  if (memo.has(id)) return memo.get(id);
  const f = byId.get(id).callFrame;
  const own = layerOf(f.url);
  const up = parent.has(id) ? layersOf(parent.get(id)) : [null, new Set()];
  const set = own ? new Set([...up[1], own]) : up[1];
  let inner = own;
  if (!inner) {
    // native builtin / node core: the nearest layer above it
    inner = up[0];
    if (f.functionName === '(garbage collector)') inner = '(garbage collector)';
  }
  const r = [inner, set];
  memo.set(id, r);
  return r;
};
const selfBy = new Map();
const writes = new Map();
const totalBy = new Map();
let busy = 0;
let t = profile.startTime;
for (let i = 0; i < profile.samples.length; i++) {
  const d = profile.timeDeltas[i] ?? 0;
  t += d;
  if (t < fromUs || t > toUs) continue;
  const node = byId.get(profile.samples[i]);
  const fn = node.callFrame.functionName;
  if (fn === '(idle)') continue;
  busy += d;
  const [inner, set] = layersOf(node.id);
  const k = inner ?? (fn === '(program)' ? '(program)' : 'node core (HTTP parse, sockets, timers)');
  selfBy.set(k, (selfBy.get(k) ?? 0) + d);
  if (fn === 'writev' || fn === 'writeUtf8String' || fn === 'writeBuffer' || fn === 'writeLatin1String') {
    const wk = `${fn} ← ${k}`;
    writes.set(wk, (writes.get(wk) ?? 0) + d);
  }
  for (const l of set) totalBy.set(l, (totalBy.get(l) ?? 0) + d);
}
const perReq = (us) => (n ? us / n : 0);
console.log(`\n${mode}, c=${connections}, ${seconds} s: ${n.toLocaleString('en')} requests, ${(n / seconds).toFixed(0)} req/s, ${perReq(busy).toFixed(0)} µs CPU (sampled, main thread) per request\n`);
console.log('| layer | self µs/req | self % | total µs/req |');
console.log('| --- | ---: | ---: | ---: |');
for (const [k, us] of [...selfBy.entries()].sort((a, b) => b[1] - a[1])) {
  console.log(`| ${k} | ${perReq(us).toFixed(0)} | ${((100 * us) / busy).toFixed(1)} | ${totalBy.has(k) ? perReq(totalBy.get(k)).toFixed(0) : ''} |`);
}
console.log('\n| socket write | by | µs/req |');
console.log('| --- | --- | ---: |');
for (const [k, us] of [...writes.entries()].sort((a, b) => b[1] - a[1])) console.log(`| ${k.split(' ← ')[0]} | ${k.split(' ← ')[1]} | ${perReq(us).toFixed(1)} |`);
const s = summarise(path, { top: Number(arg('top', 40)), fromUs, toUs });
console.log('\n| function | file:line | self % | µs/req |');
console.log('| --- | --- | ---: | ---: |');
for (const f of s.functions) console.log(`| \`${f.fn}\` | ${f.url ? `${f.url}:${f.line}` : '(V8)'} | ${f.pct.toFixed(1)} | ${perReq((f.pct / 100) * busy).toFixed(1)} |`);
if (!argv.includes('--keep')) rmSync(path, { force: true });
else console.log(`\nprofile: ${path}`);
process.exit(0);
