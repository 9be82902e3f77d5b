#!/usr/bin/env node
// A/B of two builds of the gateway in the same run, for before/after figures of a change on a busy
// machine: both run side by side against the same fake upstream; rounds alternate which one is
// loaded first. Per round and build: autocannon at 64 connections (req/s, CPU µs per request of
// the gateway process); then added latency at c=1, both builds and the direct baseline interleaved.
// Medians over rounds; ratios B ÷ A.
//
//   npm run build && cp -r dist dist-before   # (on the old code), then rebuild the new code
//   node bench/ab.mjs [--a dist-before/src/main.js] [--b dist/src/main.js] [--mode distributed]
//                     [--rounds 5] [--seconds 5] [--env KEY=VALUE]… [--flags-a '…'] [--flags-b '…']
// (--flags-*: node flags of that build, space-separated, e.g. --flags-b '--max-semi-space-size=4'.)
// RSS: idle after start, then 10 s after the last load (--late N: also N s later), then after a
// forced full GC.
import { interleavedLatency } from './latency.mjs';
import { closeRedis, configure, startGateway } from './lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, rssMB, sleep, startServer } from './lib/procs.mjs';
import { median } from './lib/stats.mjs';
import { sweep } from './sections/throughput.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const A = arg('a', 'dist-before/src/main.js');
const B = arg('b', 'dist/src/main.js');
const mode = arg('mode', 'distributed');
const rounds = Number(arg('rounds', 5));
const seconds = Number(arg('seconds', 5));
const flags = { A: (arg('flags-a', '') || '').split(' ').filter(Boolean), B: (arg('flags-b', '') || '').split(' ').filter(Boolean) };
const env = Object.fromEntries(argv.flatMap((a, i) => (argv[i - 1] === '--env' ? [a.split(/=(.*)/s).slice(0, 2)] : [])));

installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const builds = [];
try {
  for (const [label, entry] of [['A', A], ['B', B]]) {
    const gw = await startGateway(mode, { name: `ab-${label}`, entry, env, nodeFlags: flags[label] });
    const { clientKey } = await configure(gw, upstream.url);
    builds.push({
      label,
      entry,
      gw,
      target: { name: label, url: gw.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` }, pid: gw.pid },
      rps: [],
      cpu: [],
      idle: rssMB(gw.pid),
    });
  }
  for (const b of builds) await sweep(b.target, { levels: [64], durationS: 2, warmupS: 0 }); // warm-up
  for (let r = 0; r < rounds; r++) {
    for (const b of r % 2 ? [...builds].reverse() : builds) {
      const s = await sweep(b.target, { levels: [64], durationS: seconds, warmupS: 0 });
      b.rps.push(s.levels[0].rps);
      b.cpu.push(s.levels[0].cpuUsPerReq);
      await sleep(300);
    }
    console.error(`round ${r + 1}/${rounds}: ${builds.map((b) => `${b.label} ${Math.round(b.rps.at(-1))} req/s ${Math.round(b.cpu.at(-1))} µs`).join(', ')}`);
  }
  const direct = { name: 'direct', url: upstream.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } };
  const lat = await interleavedLatency([direct, ...builds.map((b) => b.target)], { rounds: Math.max(rounds, 5), perRound: 100, warmup: 200 });
  await sleep(10_000);
  for (const b of builds) b.after = rssMB(b.gw.pid);
  const lateS = Number(arg('late', 0));
  if (lateS > 0) {
    await sleep(lateS * 1000);
    for (const b of builds) b.late = rssMB(b.gw.pid);
    console.log(`RSS ${10 + lateS} s after the load: ${builds.map((b) => `${b.label} ${b.late.toFixed(0)} MB`).join(', ')}`);
  }
  for (const b of builds) await b.gw.gc();
  for (const b of builds) b.afterGc = rssMB(b.gw.pid);
  const rows = builds.map((b) => ({
    label: b.label,
    entry: b.entry,
    rps: median(b.rps),
    cpu: median(b.cpu),
    added: lat.find((l) => l.name === b.label),
    idle: b.idle,
    after: b.after,
    afterGc: b.afterGc,
  }));
  console.log(`\n${mode}, ${rounds} rounds × ${seconds} s at 64 connections, c=1 latency interleaved${Object.keys(env).length ? `, env ${JSON.stringify(env)}` : ''}\n`);
  console.log('| build | req/s @64 | CPU µs/req | added p50 / p99 ms at c=1 | RSS idle → 10 s after → after GC MB |');
  console.log('| --- | ---: | ---: | ---: | ---: |');
  for (const r of rows) console.log(`| ${r.label} ${r.entry} ${flags[r.label].join(' ')} | ${Math.round(r.rps)} | ${Math.round(r.cpu)} | ${r.added.addedP50.toFixed(3)} / ${r.added.addedP99.toFixed(3)} | ${r.idle.toFixed(0)} → ${r.after.toFixed(0)} → ${r.afterGc.toFixed(0)} |`);
  const [a, b] = rows;
  console.log(`| B ÷ A | ${(b.rps / a.rps).toFixed(3)} | ${(b.cpu / a.cpu).toFixed(3)} | ${(b.added.addedP50 - a.added.addedP50).toFixed(3)} ms p50 | |`);
  console.log(`\nper round CPU µs/req: ${builds.map((x) => `${x.label} [${x.cpu.map((v) => Math.round(v)).join(', ')}]`).join('; ')}`);
} finally {
  for (const b of builds) await b.gw.stop();
  await upstream.close();
  await cleanupAll();
  closeRedis();
}
process.exit(0);
