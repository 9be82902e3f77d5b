// Probe (not part of `npm run bench`): bytes allocated per relayed request, by function and by layer.
// V8's sampling heap profiler with collected objects included (what a scavenge reclaims: the
// per-request garbage that GC time is spent on), over a fixed closed-loop load on the instant fake
// upstream. Sampling is statistical (one sample per --interval bytes on average): compare rows.
//   npm run build && node bench/probes/alloc-profile.mjs [--mode distributed|embedded] [--c 16]
//        [--seconds 8] [--entry dist/src/main.js] [--interval 2048] [--top 40]
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { Pool } from 'undici';
import { configure, startGateway, closeRedis } from '../lib/gateway.mjs';
import { layerOf } from '../lib/layers.mjs';
import { cleanupAll, installSignalHandlers, startServer, sleep } from '../lib/procs.mjs';
import { CHAT_BODY } from '../sections/throughput.mjs';
const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const mode = arg('mode', 'distributed'), c = Number(arg('c', 16)), seconds = Number(arg('seconds', 8));
const out = `/tmp/alloc-profile-${process.pid}.json`;
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const gw = await startGateway(mode, {
  name: 'alloc', entry: arg('entry', 'dist/src/main.js'),
  nodeFlags: ['--require', new URL('./alloc-preload.cjs', import.meta.url).pathname],
  env: { ALLOC_PROFILE_OUT: out, ALLOC_SAMPLING_INTERVAL: arg('interval', '2048') },
});
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
  await load(4000);
  process.kill(gw.pid, 'SIGUSR2');
  await sleep(200);
  const n = await load(seconds * 1000);
  process.kill(gw.pid, 'SIGUSR2');
  for (let i = 0; i < 100 && !existsSync(out); i++) await sleep(100);
  await sleep(300);
  const profile = JSON.parse(readFileSync(out, 'utf8'));
  rmSync(out, { force: true });
  await pool.close();
  const byFn = new Map(), byLayer = new Map();
  let total = 0;
  const walk = (node, stack) => {
    const f = node.callFrame;
    const here = [...stack, f];
    const self = (node.selfSize ?? 0);
    if (self > 0) {
      total += self;
      const key = `${f.functionName || '(anonymous)'} ${f.url.replace(/^.*\/(node_modules|dist)\//, '$1/')}:${f.lineNumber + 1}`;
      byFn.set(key, (byFn.get(key) ?? 0) + self);
      // the innermost frame that belongs to a layer (as bench/profile.mjs attributes CPU)
      let layer = 'node core / runtime';
      for (let i = here.length - 1; i >= 0; i--) { const l = layerOf(here[i].url, here[i].functionName); if (l) { layer = l; break; } }
      byLayer.set(layer, (byLayer.get(layer) ?? 0) + self);
    }
    for (const child of node.children ?? []) walk(child, here);
  };
  walk(profile.head, []);
  const per = (b) => (b / n).toFixed(0);
  console.log(`\n${mode}, c=${c}, ${seconds} s: ${n} requests; ~${per(total)} bytes allocated per request (sampled)\n`);
  console.log('| layer | bytes/request |\n| --- | ---: |');
  for (const [k, v] of [...byLayer].sort((a, b) => b[1] - a[1])) console.log(`| ${k} | ${per(v)} |`);
  console.log('\n| function (allocating frame) | bytes/request |\n| --- | ---: |');
  for (const [k, v] of [...byFn].sort((a, b) => b[1] - a[1]).slice(0, Number(arg('top', 40)))) console.log(`| ${k} | ${per(v)} |`);
} finally {
  await gw.stop(); closeRedis(); await upstream.stop?.(); cleanupAll();
}
process.exit(0);
