// Probe (not part of `npm run bench`): CPU µs per request of the plain proxy and a gateway at fixed
// offered rates (autocannon overallRate, 64 connections, --seconds each, rates interleaved), to see
// whether a gateway's cost per request depends on its request rate (work per second rather than per
// request: timers, sweeps, GC of state kept for a time) — what a starved 5-s window would inflate.
//   npm run build && node bench/probes/cpu-vs-rate.mjs [--mode embedded] [--rates 500,1000,2000] [--seconds 5] [--rounds 2]
import autocannon from 'autocannon';
import { closeRedis, configure, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, cpuMicros, installSignalHandlers, startServer } from '../lib/procs.mjs';
import { CHAT_BODY } from '../sections/throughput.mjs';

const argv = process.argv.slice(2);
const arg = (n, d) => {
  const i = argv.indexOf(`--${n}`);
  return i === -1 ? d : argv[i + 1];
};
const mode = arg('mode', 'embedded');
const rates = arg('rates', '500,1000,2000').split(',').map(Number);
const seconds = Number(arg('seconds', 5));
const rounds = Number(arg('rounds', 2));
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const plain = await startServer('plain', { upstreamUrl: upstream.url });
const gw = await startGateway(mode, { name: 'rate' });
try {
  const { clientKey } = await configure(gw, upstream.url);
  const targets = [
    { name: 'proxy', url: plain.url, headers: {}, pid: plain.pid },
    { name: mode, url: gw.url, headers: { authorization: `Bearer ${clientKey}` }, pid: gw.pid },
  ];
  const run = (t, rate, d) =>
    autocannon({
      url: `${t.url}/v1/chat/completions`,
      method: 'POST',
      headers: { 'content-type': 'application/json', ...t.headers },
      body: CHAT_BODY,
      connections: 64,
      duration: d,
      ...(rate ? { overallRate: rate } : {}),
    });
  for (const t of targets) await run(t, 0, 2);
  const res = {};
  for (let r = 0; r < rounds; r++) {
    for (const rate of rates) {
      for (const t of r % 2 ? [...targets].reverse() : targets) {
        const c0 = cpuMicros(t.pid);
        const o = await run(t, rate, seconds);
        const n = o['2xx'];
        const us = (cpuMicros(t.pid) - c0) / n;
        (res[`${t.name}@${rate}`] ??= []).push(Math.round(us));
        console.log(`${t.name} offered ${rate}/s: ${Math.round(n / o.duration)} req/s, ${Math.round(us)} µs/req`);
      }
    }
  }
  for (const [k, v] of Object.entries(res)) console.log(`${k}: ${v.join(', ')} µs/req`);
} finally {
  await gw.stop();
  await plain.close();
  await upstream.close();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
