// Probe (not part of `npm run bench`): CPU µs per request of each thread of one gateway under a
// closed-loop load (/proc/<pid>/task/*/schedstat, ns), by thread name: in embedded mode the main
// thread, the PGlite worker, libuv/V8 helpers. Several --rounds of --seconds each; prints medians.
//   npm run build && node bench/probes/threads-cpu.mjs [--mode embedded] [--entry dist/src/main.js]
//        [--c 64] [--seconds 3] [--rounds 5] [--env '{"K":"V"}']
import { readdirSync, readFileSync } from 'node:fs';
import { Pool } from 'undici';
import { configure, startGateway, closeRedis } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer } from '../lib/procs.mjs';
import { CHAT_BODY } from '../sections/throughput.mjs';
const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const mode = arg('mode', 'embedded'), c = Number(arg('c', 64)), seconds = Number(arg('seconds', 3)), rounds = Number(arg('rounds', 5));
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const gw = await startGateway(mode, { name: 'thr', entry: arg('entry', 'dist/src/main.js'), env: { RATE_LIMIT_TIMEOUT_MS: '3000', ...JSON.parse(arg('env', '{}')) } });
try {
  const { clientKey } = await configure(gw, upstream.url);
  const pool = new Pool(gw.url, { connections: c, keepAliveTimeout: 60_000 });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
  const load = async (ms) => {
    let n = 0; const end = Date.now() + ms;
    await Promise.all(Array.from({ length: c }, async () => {
      while (Date.now() < end) { const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body: CHAT_BODY }); await r.body.dump(); if (r.statusCode === 200) n++; }
    }));
    return n;
  };
  // Threads by name; the PGlite worker is the Worker thread that burns the most (named after its index).
  const snap = () => {
    const out = new Map();
    for (const tid of readdirSync(`/proc/${gw.pid}/task`)) {
      try {
        const name = readFileSync(`/proc/${gw.pid}/task/${tid}/comm`, 'utf8').trim();
        const ns = Number(readFileSync(`/proc/${gw.pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]);
        out.set(`${name}#${tid}`, ns);
      } catch { /* thread gone */ }
    }
    return out;
  };
  await load(4000);
  const per = new Map();
  for (let r = 0; r < rounds; r++) {
    const a = snap(); const n = await load(seconds * 1000); const b = snap();
    const row = new Map();
    for (const [k, v] of b) { const name = k === `node#${gw.pid}` || k.endsWith(`#${gw.pid}`) ? 'main' : k.split('#')[0]; row.set(name, (row.get(name) ?? 0) + (v - (a.get(k) ?? 0)) / 1000 / n); }
    row.set('TOTAL', [...row.values()].reduce((x, y) => x + y, 0));
    for (const [k, v] of row) per.set(k, [...(per.get(k) ?? []), v]);
    console.log(`round ${r + 1}: ${n} requests, ${[...row].map(([k, v]) => `${k} ${v.toFixed(1)}`).join(', ')}`);
  }
  const med = (a) => { const s = [...a].sort((x, y) => x - y); return s[Math.floor(s.length / 2)]; };
  console.log(`median µs/request: ${[...per].map(([k, v]) => `${k} ${med(v).toFixed(1)}`).join(', ')}`);
  await pool.close();
} finally {
  await gw.stop(); closeRedis(); await upstream.stop?.(); cleanupAll();
}
process.exit(0);
