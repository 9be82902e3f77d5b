// Probe (not part of `npm run bench`): what a route costs per request. ONE gateway, one fake
// upstream; the load (closed loop, --c connections) alternates in short slices between the provider's
// own model id ("plain") and a route alias whose single tier-1 target is that same provider and model
// ("routed": alias lookup, target plan, breaker check, model rewritten in the payload and in the
// answer, x-floodgate-route-target). Each slice's CPU (/proc utime+stime) ÷ its requests is one
// sample; prints medians, trimmed means and the routed/plain ratio of each slice pair.
//   npm run build && node bench/probes/route-cost.mjs [--mode distributed|embedded] [--c 16] [--slices 20] [--ms 1000]
import { Pool } from 'undici';
import { admin, configure, startGateway, closeRedis } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer, cpuMicros, sleep } from '../lib/procs.mjs';
const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const mode = arg('mode', 'embedded'), c = Number(arg('c', 16)), slices = Number(arg('slices', 20)), ms = Number(arg('ms', 1000));
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
let gw, pool;
try {
  gw = await startGateway(mode, { name: 'route-cost', env: { RATE_LIMIT_TIMEOUT_MS: '3000' } });
  const { providerId, clientKey } = await configure(gw, upstream.url);
  await admin(gw, 'POST', '/api/admin/routes', {
    model: 'bench-alias',
    targets: [{ provider_id: providerId, model: 'bench-model', tier: 1 }],
  });
  pool = new Pool(gw.url, { connections: c, keepAliveTimeout: 60_000 });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
  const kinds = [
    { label: 'plain ', model: 'bench-model', per: [], bad: 0 },
    { label: 'routed', model: 'bench-alias', per: [], bad: 0 },
  ];
  for (const k of kinds) k.body = JSON.stringify({ model: k.model, messages: [{ role: 'user', content: 'hi' }] });
  const load = async (k, dur) => {
    let n = 0; const end = Date.now() + dur;
    await Promise.all(Array.from({ length: c }, async () => {
      while (Date.now() < end) { const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body: k.body }); await r.body.dump(); if (r.statusCode === 200) n++; else k.bad++; }
    }));
    return n;
  };
  for (const k of kinds) await load(k, 3000);
  for (let s = 0; s < slices; s++) {
    for (const k of s % 2 ? [...kinds].reverse() : kinds) {
      const c0 = cpuMicros(gw.pid); const n = await load(k, ms); const c1 = cpuMicros(gw.pid);
      k.per.push((c1 - c0) / n); await sleep(50);
    }
  }
  const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
  const trim = (a) => { const s = [...a].sort((x, y) => x - y); const q = Math.floor(s.length * 0.2); const t = s.slice(q, s.length - q); return t.reduce((x, y) => x + y, 0) / t.length; };
  console.log(`| ${mode} | CPU µs/request, median | trimmed mean | non-200 |\n| --- | ---: | ---: | ---: |`);
  for (const k of kinds) console.log(`| ${k.label} | ${med(k.per).toFixed(0)} | ${trim(k.per).toFixed(0)} | ${k.bad} |`);
  const pairs = kinds[0].per.map((a, i) => kinds[1].per[i] / a);
  console.log(`routed/plain per-slice-pair ratio: median ${med(pairs).toFixed(3)}, trimmed mean ${trim(pairs).toFixed(3)}`);
} finally {
  await pool?.close(); await gw?.stop(); closeRedis(); await upstream.stop?.(); cleanupAll();
}
process.exit(0);
