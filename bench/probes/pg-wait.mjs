// Probe (not part of `npm run bench`): how long a Postgres read waits in a loaded embedded gateway.
// Two builds side by side (--a, --b), the load (closed loop, --c connections, default 256 as the
// throughput sweep's top level) alternating between them in --ms slices; during each slice an admin
// read that goes to Postgres (GET /api/admin/requests?limit=1) is sent every 100 ms to the loaded
// gateway and timed. Embedded mode has one connection to its Postgres, so the read waits behind
// whatever holds it (the request-log batch): the last full bench logged a credential lookup that
// "did not answer within 1000 ms" (STALE_FALLBACK_DEADLINE_MS). Prints per build the read's
// p50/p99/max and how many took over 500 / 1000 ms, and floodgate_auth_stale_credentials_total.
//   npm run build && node bench/probes/pg-wait.mjs [--a dist-before/src/main.js] [--b dist/src/main.js]
//        [--mode embedded] [--c 256] [--slices 6] [--ms 5000]
import { Pool } from 'undici';
import { configure, startGateway, closeRedis, metricValue } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer, sleep } from '../lib/procs.mjs';
import { CHAT_BODY } from '../sections/throughput.mjs';
const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const mode = arg('mode', 'embedded'), c = Number(arg('c', 256)), slices = Number(arg('slices', 6)), ms = Number(arg('ms', 5000));
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const builds = [];
try {
  for (const [label, entry] of [['A', arg('a', 'dist-before/src/main.js')], ['B', arg('b', 'dist/src/main.js')]]) {
    const gw = await startGateway(mode, { name: `pw-${label}`, entry, env: { RATE_LIMIT_TIMEOUT_MS: '3000' } });
    const { clientKey } = await configure(gw, upstream.url);
    const pool = new Pool(gw.url, { connections: c, keepAliveTimeout: 60_000 });
    builds.push({ label, gw, pool, headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` }, reads: [], n: 0 });
  }
  const load = async (b, dur) => {
    const end = Date.now() + dur;
    const reads = (async () => {
      while (Date.now() < end) {
        const t0 = performance.now();
        const r = await fetch(`${b.gw.url}/api/admin/requests?limit=1`, { headers: { authorization: `Bearer ${b.gw.adminKey}` } });
        await r.arrayBuffer();
        b.reads.push(performance.now() - t0);
        await sleep(100);
      }
    })();
    await Promise.all(Array.from({ length: c }, async () => {
      while (Date.now() < end) { const r = await b.pool.request({ path: '/v1/chat/completions', method: 'POST', headers: b.headers, body: CHAT_BODY }); await r.body.dump(); b.n++; }
    }));
    await reads;
  };
  for (let s = 0; s < slices; s++) for (const b of s % 2 ? [...builds].reverse() : builds) { await load(b, ms); await sleep(200); }
  const q = (a, f) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * f))]; };
  for (const b of builds) {
    const stale = await metricValue(b.gw, 'floodgate_auth_stale_credentials_total');
    console.log(`${mode} ${b.label}: ${b.n} requests; Postgres read ms p50 ${q(b.reads, 0.5).toFixed(0)}, p99 ${q(b.reads, 0.99).toFixed(0)}, max ${q(b.reads, 1).toFixed(0)}; over 500 ms ${b.reads.filter((x) => x > 500).length}, over 1000 ms ${b.reads.filter((x) => x > 1000).length} of ${b.reads.length}; stale credentials ${stale}`);
  }
} finally {
  for (const b of builds) { await b.pool.close(); await b.gw.stop(); }
  closeRedis(); await upstream.stop?.(); cleanupAll();
}
process.exit(0);
