#!/usr/bin/env node
// Per-layer CPU attribution of two builds, side by side, in the same run (bench/profile.mjs's
// layers; `perf record -g` of each gateway process, kernel and V8 internals included). Both run at
// once against the same fake upstream; the load alternates between them in short slices (the
// order flips every slice), so a busy machine weighs on both alike. µs of CPU per request =
// perf samples (one per 250 µs of CPU, all threads) ÷ requests served while recorded.
//
//   npm run build && node bench/profile-ab.mjs [--a dist-before/src/main.js] [--b dist/src/main.js]
//        [--mode distributed|embedded] [--c 16] [--slices 8] [--slice-seconds 2] [--warm 10]
import { spawn } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { Pool } from 'undici';
import { perfAttribution } from './lib/layers.mjs';
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
const slices = Number(arg('slices', 8));
const sliceS = Number(arg('slice-seconds', 2));
const warmS = Number(arg('warm', 10));
const PERIOD_US = 250;

installSignalHandlers();
const dir = new URL('./out/prof/', import.meta.url).pathname;
mkdirSync(dir, { recursive: true });
const upstream = await startServer('upstream', { delayMs: 0 });
const builds = [];
try {
  for (const [label, entry] of [['A', arg('a', 'dist-before/src/main.js')], ['B', arg('b', 'dist/src/main.js')]]) {
    const gw = await startGateway(mode, {
      name: `profile-ab-${label}`,
      entry,
      nodeFlags: ['--perf-basic-prof-only-functions', '--interpreted-frames-native-stack'],
    });
    builds.push({ label, entry, gw, n: 0, file: `${dir}perf-ab-${label}-${process.pid}.data` });
  }
  for (const b of builds) {
    const { clientKey } = await configure(b.gw, upstream.url);
    b.pool = new Pool(b.gw.url, { connections, keepAliveTimeout: 60_000 });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
    b.one = async () => {
      const r = await b.pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body: CHAT_BODY });
      await r.body.dump();
      if (r.statusCode !== 200) throw new Error(`${b.label}: status ${r.statusCode}`);
    };
  }
  const load = async (b, ms, count) => {
    const end = Date.now() + ms;
    await Promise.all(
      Array.from({ length: connections }, async () => {
        while (Date.now() < end) {
          await b.one();
          if (count) b.n++;
        }
      }),
    );
  };
  for (const b of builds) await load(b, warmS * 1000, false);
  for (const b of builds) {
    b.perf = spawn('perf', ['record', '-e', 'cpu-clock', '-c', String(PERIOD_US * 1000), '-g', '-o', b.file, '-p', String(b.gw.pid)], { stdio: 'ignore' });
  }
  await new Promise((r) => setTimeout(r, 1000));
  for (let s = 0; s < slices; s++) {
    for (const b of s % 2 ? [...builds].reverse() : builds) await load(b, sliceS * 1000, true);
  }
  for (const b of builds) {
    b.perf.kill('SIGINT');
    await new Promise((r) => b.perf.once('exit', r));
    await b.pool.close();
  }
} finally {
  for (const b of builds) await b.gw.stop();
  await upstream.close();
  await cleanupAll();
  closeRedis();
}

const results = builds.map((b) => ({ ...b, a: perfAttribution(b.file) }));
const us = (r, k) => (k * PERIOD_US) / r.n;
const [A, B] = results;
console.log(`\n${mode}, c=${connections}, ${slices} alternating slices of ${sliceS} s each; perf cpu-clock, all threads of the gateway process\n`);
console.log(`| layer | A µs/req | B µs/req | B − A |`);
console.log('| --- | ---: | ---: | ---: |');
const layers = [...new Set([...A.a.byLayer.keys(), ...B.a.byLayer.keys()])];
const rows = layers.map((l) => [l, us(A, A.a.byLayer.get(l) ?? 0), us(B, B.a.byLayer.get(l) ?? 0)]).sort((x, y) => y[1] - x[1]);
for (const [l, a, b] of rows) console.log(`| ${l} | ${a.toFixed(0)} | ${b.toFixed(0)} | ${(b - a >= 0 ? '+' : '') + (b - a).toFixed(0)} |`);
const ta = us(A, A.a.samples);
const tb = us(B, B.a.samples);
console.log(`| **total** | **${ta.toFixed(0)}** | **${tb.toFixed(0)}** | **${(tb - ta).toFixed(0)} (${((100 * (tb - ta)) / ta).toFixed(0)} %)** |`);
console.log(`\nA = ${A.entry}: ${A.n} requests; B = ${B.entry}: ${B.n} requests.`);
console.log('Layer totals (layer anywhere on the stack), µs/req A → B:');
const tl = [...new Set([...A.a.byLayerTotal.keys(), ...B.a.byLayerTotal.keys()])];
console.log(tl.map((l) => `${l} ${us(A, A.a.byLayerTotal.get(l) ?? 0).toFixed(0)} → ${us(B, B.a.byLayerTotal.get(l) ?? 0).toFixed(0)}`).join('; '));
if (!argv.includes('--keep')) for (const b of builds) rmSync(b.file, { force: true });
process.exit(0);
