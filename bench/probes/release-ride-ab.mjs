// Probe (issue 18/14, deferred releases): two builds side by side in distributed mode, EACH against
// its own private redis-server, the closed-loop load (--c clients) alternating between them in
// slices (--ms, order flipping every slice). Per slice and build: Redis read events
// (INFO stats total_reads_processed) and write events per request, Redis process CPU µs per
// request (INFO cpu), gateway CPU µs per request (/proc), and wall ms per request per client
// (at c=1: the client-side latency). Prints medians, quartiles of the B/A pair ratios and in how
// many pairs B was lower.
//   npm run build && node bench/probes/release-ride-ab.mjs --a <old dist/src/main.js> [--b dist/src/main.js] [--c 1] [--slices 20] [--ms 1500]
//        [--env-a '{"K":"V"}'] [--env-b …]
import { Pool } from 'undici';
import { configure, startGateway, closeRedis } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer, cpuMicros, sleep } from '../lib/procs.mjs';
import { CHAT_BODY } from '../sections/throughput.mjs';
import { startPrivateRedis } from '../sections/redis-cost.mjs';
const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const c = Number(arg('c', 1)), slices = Number(arg('slices', 20)), ms = Number(arg('ms', 1500));
const entries = [['A', arg('a', 'dist-before/src/main.js')], ['B', arg('b', 'dist/src/main.js')]];
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const builds = [];
async function redisSample(client) {
  const [stats, cpu] = await Promise.all([client.info('stats'), client.info('cpu')]);
  const g = (text, k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(text)?.[1] ?? NaN);
  return { reads: g(stats, 'total_reads_processed'), writes: g(stats, 'total_writes_processed'), cpu: (g(cpu, 'used_cpu_sys') + g(cpu, 'used_cpu_user')) * 1e6 };
}
try {
  for (const [label, entry] of entries) {
    const redis = await startPrivateRedis();
    const extra = JSON.parse(arg(`env-${label.toLowerCase()}`, '{}'));
    const gw = await startGateway('distributed', { name: `rr-${label}`, entry, redisUrl: redis.url, env: { RATE_LIMIT_TIMEOUT_MS: '3000', ...extra } });
    const { clientKey } = await configure(gw, upstream.url);
    const pool = new Pool(gw.url, { connections: c, keepAliveTimeout: 60_000 });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
    builds.push({ label, redis, gw, pool, headers, m: { reads: [], writes: [], rcpu: [], gcpu: [], ms: [] }, bad: 0 });
  }
  const load = async (b, dur) => {
    let n = 0; const end = Date.now() + dur;
    await Promise.all(Array.from({ length: c }, async () => {
      while (Date.now() < end) { const r = await b.pool.request({ path: '/v1/chat/completions', method: 'POST', headers: b.headers, body: CHAT_BODY }); await r.body.dump(); if (r.statusCode === 200) n++; else b.bad++; }
    }));
    return n;
  };
  for (const b of builds) await load(b, 3000);
  for (let s = 0; s < slices; s++) {
    for (const b of s % 2 ? [...builds].reverse() : builds) {
      await sleep(100);
      const r0 = await redisSample(b.redis.client); const g0 = cpuMicros(b.gw.pid); const t0 = performance.now();
      const n = await load(b, ms);
      const t1 = performance.now(); const g1 = cpuMicros(b.gw.pid); const r1 = await redisSample(b.redis.client);
      // the two INFO calls are one read and one write of ours each
      b.m.reads.push((r1.reads - r0.reads - 1) / n); b.m.writes.push((r1.writes - r0.writes - 1) / n);
      b.m.rcpu.push((r1.cpu - r0.cpu) / n); b.m.gcpu.push((g1 - g0) / n); b.m.ms.push(((t1 - t0) * c) / n);
    }
  }
  const sorted = (a) => [...a].sort((x, y) => x - y);
  const q = (a, f) => { const s = sorted(a); return s[Math.min(s.length - 1, Math.floor(s.length * f))]; };
  const fmt = (v) => (Math.abs(v) >= 10 ? v.toFixed(0) : v.toFixed(3));
  console.log(`c=${c}, ${slices} slice pairs of ${ms} ms`);
  for (const k of ['reads', 'writes', 'rcpu', 'gcpu', 'ms']) {
    const [A, B] = builds.map((b) => b.m[k]);
    const pairs = A.map((a, i) => B[i] / a);
    console.log(`${k.padEnd(6)} A median ${fmt(q(A, 0.5))} [${fmt(q(A, 0.25))}–${fmt(q(A, 0.75))}]  B median ${fmt(q(B, 0.5))} [${fmt(q(B, 0.25))}–${fmt(q(B, 0.75))}]  B/A median ${q(pairs, 0.5).toFixed(3)} (quartiles ${q(pairs, 0.25).toFixed(3)}–${q(pairs, 0.75).toFixed(3)}), B lower in ${pairs.filter((r) => r < 1).length}/${pairs.length}`);
  }
  for (const b of builds) console.log(`${b.label}: non-200 ${b.bad}`);
} finally {
  for (const b of builds) { await b.pool.close(); await b.gw.stop(); await b.redis.close(); }
  closeRedis(); await upstream.stop?.(); await upstream.close?.(); cleanupAll();
}
process.exit(0);
