// Probe (not part of `npm run bench`): CPU µs per request of two builds on a busy machine. Both run
// side by side; the load (closed loop, --c connections) alternates between them in short slices
// (--ms, the order flipping every slice), and each slice's CPU (/proc utime+stime) ÷ its requests is
// one sample. Prints per build the median and 20 %-trimmed mean, and the B/A ratio of each slice
// pair (the same moment's noise on both). RATE_LIMIT_TIMEOUT_MS=3000 so a starved process answers
// late rather than 503. Use REDIS_URL=redis://127.0.0.1:<port> for a private redis-server.
//   npm run build && node bench/probes/cpu-slices-ab.mjs [--a dist-before/src/main.js] [--b dist/src/main.js]
//        [--mode distributed|embedded] [--c 8] [--slices 30] [--ms 1000]
//        [--env-a '{"K":"V"}'] [--env-b …] [--flags-a '--v8-flag …'] [--flags-b …]  (one build, two settings)
//        [--stream]  (short SSE streams instead of JSON answers)
// Prints the pair ratio's median, trimmed mean, quartiles and in how many pairs B was lower: the
// same build on both sides gives a median of ~1.01 with quartiles ±7 % on this machine (30 slices).
import { Pool } from 'undici';
import { configure, startGateway, closeRedis } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer, cpuMicros, sleep } from '../lib/procs.mjs';
import { CHAT_BODY } from '../sections/throughput.mjs';
const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const mode = arg('mode', 'distributed'), c = Number(arg('c', 16)), slices = Number(arg('slices', 30)), ms = Number(arg('ms', 1000));
// --stream: short SSE streams (2 deltas 5 ms apart, as the streaming TTFB burst asks for)
const BODY = argv.includes('--stream') ? JSON.stringify({ ...JSON.parse(CHAT_BODY), stream: true, bench_deltas: 2, bench_pace_ms: 5 }) : CHAT_BODY;
const entries = [['A', arg('a', 'dist-before/src/main.js')], ['B', arg('b', 'dist/src/main.js')]];
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const builds = [];
try {
  for (const [label, entry] of entries) {
    const extra = JSON.parse(arg(`env-${label.toLowerCase()}`, '{}'));
    const nodeFlags = (arg(`flags-${label.toLowerCase()}`, '') || '').split(' ').filter(Boolean);
    const gw = await startGateway(mode, { name: `sl-${label}`, entry, nodeFlags, env: { RATE_LIMIT_TIMEOUT_MS: '3000', ...extra } });
    const { clientKey } = await configure(gw, upstream.url);
    const pool = new Pool(gw.url, { connections: c, keepAliveTimeout: 60_000 });
    const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
    builds.push({ label, gw, pool, headers, per: [], bad: 0 });
  }
  const load = async (b, dur) => {
    let n = 0; const end = Date.now() + dur;
    await Promise.all(Array.from({ length: c }, async () => {
      while (Date.now() < end) { const r = await b.pool.request({ path: '/v1/chat/completions', method: 'POST', headers: b.headers, body: BODY }); await r.body.dump(); if (r.statusCode === 200) n++; else b.bad++; }
    }));
    return n;
  };
  for (const b of builds) await load(b, 4000);
  for (let s = 0; s < slices; s++) {
    for (const b of s % 2 ? [...builds].reverse() : builds) {
      const c0 = cpuMicros(b.gw.pid); const n = await load(b, ms); const c1 = cpuMicros(b.gw.pid);
      b.per.push((c1 - c0) / n); await sleep(50);
    }
  }
  const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
  const trim = (a) => { const s = [...a].sort((x, y) => x - y); const k = Math.floor(s.length * 0.2); const t = s.slice(k, s.length - k); return t.reduce((x, y) => x + y, 0) / t.length; };
  const pairs = builds[0].per.map((a, i) => builds[1].per[i] / a);
  for (const b of builds) console.log(`${mode} ${b.label}: median ${med(b.per).toFixed(0)} µs/req, trimmed mean ${trim(b.per).toFixed(0)}, non-200 ${b.bad}`);
  const q = (a, f) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * f))]; };
  console.log(`B/A per-slice-pair ratio: median ${med(pairs).toFixed(3)}, trimmed mean ${trim(pairs).toFixed(3)}, quartiles ${q(pairs, 0.25).toFixed(3)}–${q(pairs, 0.75).toFixed(3)}, B lower in ${pairs.filter((r) => r < 1).length} of ${pairs.length} pairs`);
} finally {
  for (const b of builds) { await b.pool.close(); await b.gw.stop(); }
  closeRedis(); await upstream.stop?.(); cleanupAll();
}
process.exit(0);
