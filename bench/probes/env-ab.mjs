// Probe (not part of `npm run bench`): the same build started twice, B with extra environment (e.g.
// glibc malloc settings, which only the environment at exec can set), side by side; rounds alternate
// which one is loaded first (autocannon, 64 connections). Medians of req/s and CPU µs per request,
// and RSS idle → 12 s after the last round → after a forced GC.
//   npm run build && node bench/probes/env-ab.mjs [embedded|distributed] '{"MALLOC_MMAP_THRESHOLD_":"131072"}' [rounds] [seconds]
import { closeRedis, configure, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, rssMB, sleep, startServer } from '../lib/procs.mjs';
import { median } from '../lib/stats.mjs';
import { sweep } from '../sections/throughput.mjs';

const [mode = 'embedded', envB = '{}', roundsArg = '4', secondsArg = '5'] = process.argv.slice(2);
const rounds = Number(roundsArg);
const seconds = Number(secondsArg);
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const builds = [];
try {
  for (const [label, env] of [['A', {}], ['B', JSON.parse(envB)]]) {
    const gw = await startGateway(mode, { name: `env-ab-${label}`, env });
    const { clientKey } = await configure(gw, upstream.url);
    const target = { name: label, url: gw.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` }, pid: gw.pid };
    builds.push({ label, env, gw, target, rps: [], cpu: [] });
  }
  await sleep(12_000);
  for (const b of builds) b.idle = rssMB(b.gw.pid);
  for (let r = 0; r < rounds; r++) {
    for (const b of r % 2 ? [...builds].reverse() : builds) {
      const s = await sweep(b.target, { levels: [64], durationS: seconds, warmupS: 0 });
      b.rps.push(s.levels[0].rps);
      b.cpu.push(s.levels[0].cpuUsPerReq);
    }
    console.error(`round ${r + 1}/${rounds}: ${builds.map((b) => `${b.label} ${Math.round(b.rps.at(-1))} req/s ${Math.round(b.cpu.at(-1))} µs`).join(', ')}`);
  }
  await sleep(12_000);
  for (const b of builds) b.after = rssMB(b.gw.pid);
  for (const b of builds) await b.gw.gc();
  for (const b of builds) b.afterGc = rssMB(b.gw.pid);
  console.log(`\n${mode}, ${rounds} rounds × ${seconds} s at 64 connections\n`);
  console.log('| gateway | req/s @64 | CPU µs/req | RSS idle → 12 s after → after GC MB |');
  console.log('| --- | ---: | ---: | ---: |');
  for (const b of builds)
    console.log(`| ${b.label} ${JSON.stringify(b.env)} | ${Math.round(median(b.rps))} | ${Math.round(median(b.cpu))} | ${b.idle.toFixed(0)} → ${b.after.toFixed(0)} → ${b.afterGc.toFixed(0)} |`);
  console.log(`\nper round CPU µs/req: ${builds.map((b) => `${b.label} [${b.cpu.map(Math.round).join(', ')}]`).join('; ')}`);
} finally {
  for (const b of builds) await b.gw.stop();
  await upstream.stop?.();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
