// Probe (not part of `npm run bench`): two builds, the plain proxy and the direct upstream in one
// run: added latency at c=1 (interleaved request by request, bench/latency.mjs) and the streaming
// TTFB of 32 concurrent streams (bench/sections/streaming.mjs burstTtfb, order rotating per round).
// The build in the first slot gains ~0.1 ms at c=1 from its position: swap --a/--b to check.
//   npm run build && node bench/probes/ttfb-latency-ab.mjs [--a …] [--b …] [--mode distributed|embedded]
//        [--rounds 10] [--lat-rounds 10] [--no-ttfb]
// Also prints the per-round B − A of the TTFB p99 (median, quartiles, rounds B was lower).
import { configure, startGateway, closeRedis } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer } from '../lib/procs.mjs';
import { startPlainProxy } from '../lib/plain-proxy.mjs';
import { burstTtfb } from '../sections/streaming.mjs';
import { interleavedLatency } from '../latency.mjs';
const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const mode = arg('mode', 'distributed'); const rounds = Number(arg('rounds', 10));
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const proxy = await startPlainProxy(upstream.url);
const gws = [];
const targets = [{ name: 'direct', url: upstream.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } },
  { name: 'proxy', url: proxy.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json' } }];
try {
  for (const [label, entry] of [['A', arg('a', 'dist-before/src/main.js')], ['B', arg('b', 'dist/src/main.js')]]) {
    const gw = await startGateway(mode, { name: `tt-${label}`, entry, env: { RATE_LIMIT_TIMEOUT_MS: '3000' } });
    gws.push(gw);
    const { clientKey } = await configure(gw, upstream.url);
    targets.push({ name: label, url: gw.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` } });
  }
  const lat = await interleavedLatency(targets, { rounds: Number(arg('lat-rounds', 10)), perRound: 100, warmup: 200 });
  for (const r of lat) console.log(`${mode} c=1 ${r.name}: p50 ${r.p50.toFixed(3)} p99 ${r.p99.toFixed(3)} added p50 ${r.addedP50.toFixed(3)} p99 ${r.addedP99.toFixed(3)} ms`);
  if (!argv.includes('--no-ttfb')) {
    const rows = await burstTtfb(targets, { streams: 32, rounds, warmupRounds: 2 });
    for (const r of rows) console.log(`${mode} ${r.name}: p50 ${r.p50.toFixed(2)} p99 ${r.p99.toFixed(2)} added p99 ${r.addedP99.toFixed(2)} ms`);
    // Round by round (A and B ran back to back in each round): B − A of the round's p99.
    const a = rows.find((r) => r.name === 'A').perRoundP99, b = rows.find((r) => r.name === 'B').perRoundP99;
    const d = b.map((x, i) => x - a[i]).sort((x, y) => x - y);
    const q = (p) => d[Math.min(d.length - 1, Math.floor(p * d.length))];
    console.log(`${mode} per-round p99 B−A: median ${q(0.5).toFixed(2)} ms, quartiles ${q(0.25).toFixed(2)} / ${q(0.75).toFixed(2)}; B lower in ${d.filter((x) => x < 0).length} of ${d.length} rounds`);
  }
} finally {
  for (const g of gws) await g.stop(); await proxy.close(); closeRedis(); cleanupAll();
}
process.exit(0);
