// Probe (not part of `npm run bench`): why the embedded "CPU per request ≤ 3× the plain proxy" figure
// of `npm run bench` moves between runs. Runs the throughput section's c=64 level (autocannon, 5 s,
// the bench's own sweep()) against the plain proxy and the gateways, --rounds times, the targets'
// order rotating each round, and prints per window: req/s, CPU µs/req of the measured process, the
// machine's busy and steal share during the window (/proc/stat), and for a gateway its threads
// (main = the event loop; v8 = V8's platform threads: GC, compilers; pool = libuv's; worker =
// embedded: PGlite's server thread) and the requests it has served before the window (= rows in its
// request log, the warm-up's not counted). Then per round the ratio gateway ÷ proxy.
//   npm run build && node bench/probes/throughput-variance.mjs [--modes embedded,distributed]
//        [--rounds 5] [--seconds 5] [--warmup 2] [--prefill 0] [--fresh] [--entry dist/src/main.js]
// --prefill N: N requests at c=8 into each gateway before round 1 (an old request log).
// --fresh: a new gateway every round (nothing served before but the warm-up).
import { readFileSync, readdirSync } from 'node:fs';
import { Pool } from 'undici';
import { closeRedis, configure, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, cpuMicros, installSignalHandlers, sleep, startServer } from '../lib/procs.mjs';
import { CHAT_BODY, sweep } from '../sections/throughput.mjs';

const argv = process.argv.slice(2);
const arg = (n, d) => {
  const i = argv.indexOf(`--${n}`);
  return i === -1 ? d : argv[i + 1];
};
const modes = arg('modes', 'embedded').split(',').filter(Boolean);
const rounds = Number(arg('rounds', 5));
const seconds = Number(arg('seconds', 5));
const warmupS = Number(arg('warmup', 2));
const prefill = Number(arg('prefill', 0));
const fresh = argv.includes('--fresh');
const entry = arg('entry', 'dist/src/main.js');

const machine = () => {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal
  const total = f.slice(0, 8).reduce((a, b) => a + b, 0);
  return { total, idle: f[3] + f[4], steal: f[7] };
};
// Threads by creation order (all are named "node"): the main thread, then Node's inspector/signal
// thread and V8's 4 platform workers (GC, compilers), a spare, libuv's 4-thread pool, then worker
// threads (embedded: PGlite's server thread).
const threads = (pid) => {
  const out = { main: 0, v8: 0, pool: 0, worker: 0 };
  const tids = readdirSync(`/proc/${pid}/task`).map(Number).sort((a, b) => a - b);
  tids.forEach((tid, i) => {
    try {
      const us = Number(readFileSync(`/proc/${pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]) / 1000;
      out[i === 0 ? 'main' : i <= 6 ? 'v8' : i <= 10 ? 'pool' : 'worker'] += us;
    } catch {
      // thread gone
    }
  });
  return out;
};

installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const plain = await startServer('plain', { upstreamUrl: upstream.url });
const proxyT = { name: 'proxy', url: plain.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json' }, pid: plain.pid };
const gws = new Map(); // mode -> { gw, target, served }

async function startMode(mode) {
  const gw = await startGateway(mode, { name: `var-${mode}`, entry });
  const { clientKey } = await configure(gw, upstream.url);
  const target = { name: mode, url: gw.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` }, pid: gw.pid };
  const g = { gw, target, served: 0 };
  if (prefill > 0) {
    const pool = new Pool(gw.url, { connections: 8 });
    let left = prefill;
    await Promise.all(
      Array.from({ length: 8 }, async () => {
        while (left-- > 0) {
          const r = await pool.request({ path: target.path, method: 'POST', headers: target.headers, body: CHAT_BODY });
          await r.body.dump();
        }
      }),
    );
    await pool.close();
    g.served += prefill;
  }
  return g;
}

const rows = [];
try {
  for (const m of modes) gws.set(m, await startMode(m));
  // the bench's warm-up: each target once at c=64
  for (const t of [proxyT, ...[...gws.values()].map((g) => g.target)]) await sweep(t, { levels: [64], durationS: warmupS, warmupS: 0 });
  for (let r = 0; r < rounds; r++) {
    if (fresh && r > 0) {
      for (const m of modes) {
        await gws.get(m).gw.stop();
        gws.set(m, await startMode(m));
        await sweep(gws.get(m).target, { levels: [64], durationS: warmupS, warmupS: 0 });
      }
    }
    const order = [proxyT, ...modes.map((m) => gws.get(m).target)];
    const rot = order.slice(r % order.length).concat(order.slice(0, r % order.length));
    const round = { round: r + 1 };
    for (const t of rot) {
      const g = gws.get(t.name);
      const m0 = machine();
      const t0 = threads(t.pid);
      const s = await sweep(t, { levels: [64], durationS: seconds, warmupS: 0 });
      const t1 = threads(t.pid);
      const m1 = machine();
      const l = s.levels[0];
      const n = l.rps * seconds;
      const dt = m1.total - m0.total;
      const row = {
        round: r + 1,
        target: t.name,
        rps: Math.round(l.rps),
        cpu: Math.round(l.cpuUsPerReq),
        mainUs: Math.round((t1.main - t0.main) / n),
        v8Us: Math.round((t1.v8 - t0.v8) / n),
        poolUs: Math.round((t1.pool - t0.pool) / n),
        workerUs: Math.round((t1.worker - t0.worker) / n),
        busy: Math.round((100 * (dt - (m1.idle - m0.idle))) / dt),
        steal: Math.round((100 * (m1.steal - m0.steal)) / dt),
        logRows: g ? g.served : '',
      };
      if (g) g.served += Math.round(n);
      rows.push(row);
      round[t.name] = row.cpu;
      console.log(JSON.stringify(row));
      await sleep(200);
    }
    console.log(`round ${r + 1}: ${modes.map((m) => `${m}/proxy ${(round[m] / round.proxy).toFixed(2)}×`).join(', ')}`);
  }
  const med = (a) => {
    const s = [...a].sort((x, y) => x - y);
    return s[Math.floor(s.length / 2)];
  };
  const by = (name) => rows.filter((x) => x.target === name);
  console.log(`proxy: cpu µs/req ${by('proxy').map((x) => x.cpu).join(', ')} (median ${med(by('proxy').map((x) => x.cpu))})`);
  for (const m of modes) {
    const ratios = by(m).map((x, i) => x.cpu / by('proxy')[i].cpu);
    console.log(`${m}: cpu µs/req ${by(m).map((x) => x.cpu).join(', ')} (median ${med(by(m).map((x) => x.cpu))}); ratio ${ratios.map((x) => x.toFixed(2)).join(', ')} (median ${med(ratios).toFixed(2)})`);
  }
} finally {
  for (const g of gws.values()) await g.gw.stop();
  await plain.close();
  await upstream.close();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
