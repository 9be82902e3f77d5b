// Probe (not part of `npm run bench`): where the wall time of one request goes at concurrency 1.
// Starts one gateway with bench/probes/c1-wall-preload.mjs, sends --n sequential requests (after a
// warm-up) and prints the median and p90 of each segment of the request's life in the gateway:
//   start→handle     Node's request start to RelayService.handle (body parse, hooks, guards: auth, rate limit)
//   handle→upCreate  validate, route, admit (distributed: the admission EVALSHA) until undici's request is created
//   upCreate→upSent  undici building and writing the upstream request
//   upSent→upHeaders the upstream's answer headers (upstream + loopback)
//   upHeaders→upDone the answer's body
//   upDone→endCall   the JSON responder until res.end
//   endCall→finish   Node writing the response
//   finish→idle      what runs after the response until the next setImmediate (release, account…)
//   prevFinish→start the gap between responses (client turnaround + anything that delays reading the next request)
// and, from the client's own marks on the same monotonic clock: client sent→start (the request's way
// in: the client's send, the kernel, the gateway's wake-up and HTTP parse), sockWrite→sockWritten
// (the response's write syscall; longer when the woken client runs on the gateway's CPU inside it),
// sockWrite→client head/done (the way out: wake-up and the client parsing the answer), and the
// client's own CPU per request (process.cpuUsage: its undici parsing the answer's headers).
// --pin-gateway CPU puts every thread of the gateway (or proxy) on that CPU: run the probe under
// `taskset -c <the other>` to keep client and upstream off it.
//   node bench/probes/c1-wall.mjs [--mode distributed|embedded] [--entry dist/src/main.js] [--n 2000]
//        [--redis-url redis://… (a private redis-server)] [--env NAME=VALUE …] [--back-to-back] [--pin-gateway CPU] [--node-flag --trace-gc …] [--cpu-prof DIR --marks FILE]  (then bench/probes/c1-wall-prof.mjs DIR/*.cpuprofile FILE)
import { fileURLToPath } from 'node:url';
import { readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { Pool } from 'undici';
import { configure, startGateway, closeRedis } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer } from '../lib/procs.mjs';

const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const mode = arg('mode', 'distributed');
const entry = arg('entry', 'dist/src/main.js');
const n = Number(arg('n', 2000));
const root = fileURLToPath(new URL('../../', import.meta.url));
const outFile = `/tmp/c1-wall-${process.pid}.json`;
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] });
let gw;
let gwPid;
try {
  if (argv.includes('--proxy')) {
    // the plain proxy (bench/lib/plain-proxy.mjs) in a process of its own, with the same marks
    const { spawn } = await import('node:child_process');
    const code = `const m = await import(${JSON.stringify(new URL('../lib/plain-proxy.mjs', import.meta.url).href)}); const p = await m.startPlainProxy(${JSON.stringify(upstream.url)}); console.log(p.url); process.on('SIGTERM', () => process.exit(0));`;
    const child = spawn(process.execPath, [...(arg('cpu-prof') ? ['--cpu-prof', `--cpu-prof-dir=${arg('cpu-prof')}`, '--cpu-prof-interval', '25'] : []), '--import', fileURLToPath(new URL('./c1-wall-preload.mjs', import.meta.url)), '--input-type=module', '-e', code], { env: { ...process.env, C1_WALL_OUT: outFile }, stdio: ['ignore', 'pipe', 'inherit'] });
    const url = await new Promise((resolve) => child.stdout.once('data', (d) => resolve(String(d).trim())));
    gwPid = child.pid;
    gw = { url, stop: async () => { if (child.exitCode === null) { child.kill('SIGTERM'); await new Promise((r) => child.once('exit', r)); } } };
  } else gw = await startGateway(mode, {
    ...(arg('redis-url') ? { redisUrl: arg('redis-url') } : {}),
    name: 'c1wall', entry,
    nodeFlags: [...(arg('cpu-prof') ? ['--cpu-prof', `--cpu-prof-dir=${arg('cpu-prof')}`, '--cpu-prof-interval', '25'] : []), ...argv.flatMap((a, i) => (a === '--node-flag' ? [argv[i + 1]] : [])), '--import', fileURLToPath(new URL('./c1-wall-preload.mjs', import.meta.url))],
    env: { ...Object.fromEntries(argv.flatMap((a, i) => (a === '--env' ? [argv[i + 1].split(/=(.*)/s).slice(0, 2)] : []))), RATE_LIMIT_TIMEOUT_MS: '3000', C1_WALL_OUT: outFile, C1_WALL_DIST: `${root}${entry.replace(/\/main\.js$/, '')}` },
  });
  // --pin-gateway CPU: the gateway (or proxy) alone on one CPU (run the probe itself under `taskset -c <other>`)
  if (arg('pin-gateway')) {
    const { execFileSync } = await import('node:child_process');
    execFileSync('taskset', ['-a', '-p', '-c', arg('pin-gateway'), String(gw.pid ?? gwPid)], { stdio: 'ignore' });
  }
  const { clientKey } = argv.includes('--proxy') ? { clientKey: 'x' } : await configure(gw, upstream.url);
  const pool = new Pool(gw.url, { connections: 1, keepAliveTimeout: 60_000 });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
  const direct = new Pool(upstream.url, { connections: 1, keepAliveTimeout: 60_000 });
  const client = [];
  // the client's own marks on the same clock as the gateway's (CLOCK_MONOTONIC, µs): when it sent
  // the request, got the answer's headers and its body
  const clientAt = [];
  // the gateway's (or proxy's) context switches over the measured requests: main thread, all threads
  const procPid = gw.pid ?? gwPid;
  const switches = () => {
    const one = (f) => { const t = readFileSync(f, 'utf8'); return Number(/^voluntary_ctxt_switches:\s*(\d+)/m.exec(t)[1]) + Number(/^nonvoluntary_ctxt_switches:\s*(\d+)/m.exec(t)[1]); };
    try {
      const tids = readdirSync(`/proc/${procPid}/task`);
      return { main: one(`/proc/${procPid}/task/${procPid}/status`), all: tids.reduce((a, t) => a + one(`/proc/${procPid}/task/${t}/status`), 0) };
    } catch { return null; }
  };
  let sw0 = null;
  for (let i = 0; i < 500 + n; i++) {
    if (i === 500) sw0 = switches();
    const cpu0 = process.cpuUsage();
    const t0 = process.hrtime.bigint();
    const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body: BODY });
    const tHead = process.hrtime.bigint();
    await r.body.text();
    const t1 = process.hrtime.bigint();
    if (i >= 500) {
      client.push(Number(t1 - t0) / 1e6);
      const cpu = process.cpuUsage(cpu0);
      clientAt.push({ sent: Number(t0) / 1e6, head: Number(tHead) / 1e6, done: Number(t1) / 1e6, cpu: (cpu.user + cpu.system) / 1000 });
    }
    // as in bench/latency.mjs, other targets' requests come between two to the gateway
    if (!argv.includes('--back-to-back')) await (await direct.request({ path: '/v1/chat/completions', method: 'POST', headers: { 'content-type': 'application/json' }, body: BODY })).body.text();
  }
  const sw1 = switches();
  await direct.close();
  await pool.close();
  await gw.stop();
  const rows = JSON.parse(readFileSync(outFile, 'utf8')).slice(-n).map((r) => Object.fromEntries(Object.entries(r).map(([k, v]) => [k, typeof v === 'number' ? v / 1000 : k === 'redis' ? v.map((c) => ({ ...c, at: c.at / 1000, done: c.done / 1000 })) : v])));
  if (arg('marks')) writeFileSync(arg('marks'), JSON.stringify(rows.map((r, i) => ({ ...r, clientSent: clientAt[i]?.sent, clientHead: clientAt[i]?.head }))));
  rmSync(outFile, { force: true });
  const q = (xs, p) => { const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b); return s.length ? s[Math.min(s.length - 1, Math.floor(p * s.length))] : NaN; };
  const seg = (name, f) => { const xs = rows.map(f); console.log(`${name.padEnd(18)} p50 ${q(xs, 0.5).toFixed(3)}  p90 ${q(xs, 0.9).toFixed(3)} ms`); };
  console.log(`${argv.includes('--proxy') ? 'plain proxy' : `${mode} ${entry}`}: ${rows.length} requests; load ${readFileSync('/proc/loadavg', 'utf8').trim()}`);
  if (sw0 && sw1) console.log(`context switches per request: main thread ${((sw1.main - sw0.main) / n).toFixed(2)}, all threads ${((sw1.all - sw0.all) / n).toFixed(2)}`);
  seg('client round trip', (_, i) => client[i]);
  // client-side marks against the gateway's (ms on the shared monotonic clock)
  seg('client sent→start', (r, i) => r.start - clientAt[i].sent);
  seg('client CPU (its own)', (_, i) => clientAt[i].cpu);
  seg('sockWrite→sockWritten', (r) => r.sockWritten - r.sockWrite);
  console.log(`upstream request write: ${q(rows.map((r) => r.upBytes * 1000), 0.5)} bytes in ${q(rows.map((r) => r.upChunks * 1000), 0.5)} chunk(s) (p50)`);
  console.log(`response write: ${q(rows.map((r) => r.sockBytes * 1000), 0.5)} bytes in ${q(rows.map((r) => r.sockChunks * 1000), 0.5)} chunk(s) (p50)`);
  seg('sockWrite→client head', (r, i) => clientAt[i].head - r.sockWrite);
  seg('sockWrite→client done', (r, i) => clientAt[i].done - r.sockWrite);
  seg('prevFinish→start', (r) => (r.prevFinish ? r.start - r.prevFinish : NaN));
  seg('start→handle', (r) => r.handle - r.start);
  seg(' start→fHandler', (r) => r.fHandler - r.start);
  seg('  start→onRequest', (r) => r.fOnRequest - r.start);
  seg('  onRequest→preParsing', (r) => r.fPreParsing - r.fOnRequest);
  seg('  preParsing→bodyEnd', (r) => r.bodyEnd - r.fPreParsing);
  seg('  bodyEnd→preValidation', (r) => r.fPreValidation - r.bodyEnd);
  seg('  preValidation→preHandler', (r) => r.fPreHandler - r.fPreValidation);
  seg('  preHandler→fHandler', (r) => r.fHandler - r.fPreHandler);
  seg(' fHandler→authIn', (r) => r.authIn - r.fHandler);
  seg(' auth guard', (r) => r.authOut - r.authIn);
  seg(' authOut→rlIn', (r) => r.rlIn - r.authOut);
  seg(' rate-limit guard', (r) => r.rlOut - r.rlIn);
  seg(' rlOut→hcIn', (r) => r.hcIn - r.rlOut);
  seg(' handler-ctx guard', (r) => r.hcOut - r.hcIn);
  seg(' hcOut→handle', (r) => r.handle - r.hcOut);
  seg('handle→upCreate', (r) => r.upCreate - r.handle);
  seg(' handle→admitIn', (r) => r.admitIn - r.handle);
  seg(' admitIn→admitRet', (r) => r.admitRet - r.admitIn);
  seg(' admitRet→deliverIn', (r) => r.deliverIn - r.admitRet);
  seg(' deliverIn→upCreate', (r) => r.upCreate - r.deliverIn);
  seg('start→upCreate', (r) => r.upCreate - r.start);
  seg('upCreate→upSent', (r) => r.upSent - r.upCreate);
  seg('upSent→upWrite', (r) => r.upWrite - r.upSent);
  seg('upWrite→upWritten', (r) => r.upWritten - r.upWrite);
  seg('upWritten→upFree', (r) => r.upFree - r.upWritten);
  seg('upFree→upHeaders', (r) => r.upHeaders - r.upFree);
  seg('upSent→upHeaders', (r) => r.upHeaders - r.upSent);
  seg('upHeaders→upDone', (r) => r.upDone - r.upHeaders);
  seg('upDone→respond', (r) => r.respond - r.upDone);
  seg('respond→endCall', (r) => r.endCall - r.respond);
  seg('upDone→sockWrite', (r) => r.sockWrite - r.upDone);
  seg('endCall→sockWrite', (r) => r.sockWrite - r.endCall);
  seg('start→sockWrite', (r) => r.sockWrite - r.start);
  seg('handle→1st redis', (r) => (r.redis[0] ? r.redis[0].at - r.handle : NaN));
  seg('1st redis done→upCreate', (r) => (r.redis[0] ? r.upCreate - r.redis[0].done : NaN));
  seg('endCall→finish', (r) => r.finish - r.endCall);
  seg('start→finish', (r) => r.finish - r.start);
  seg('finish→idle', (r) => r.afterIdle - r.finish);
  const names = new Map();
  for (const r of rows) for (const c of r.redis) {
    const k = `${c.name}${c.at < (r.upCreate ?? Infinity) ? ' (before upstream)' : c.at < r.finish ? ' (before finish)' : ' (after finish)'}`;
    (names.get(k) ?? names.set(k, []).get(k)).push(c.done - c.at);
  }
  for (const [k, xs] of names) console.log(`redis ${k}: ${(xs.length / rows.length).toFixed(2)}/request, p50 ${q(xs, 0.5).toFixed(3)} ms`);
  // distributed: the previous request's release answer read between this request's upstream
  // dispatch and undici's write of it (undici yields one loop turn before reusing an idle socket)
  const inWindow = [];
  const outside = [];
  for (let i = 1; i < rows.length; i++) {
    const prev = rows[i - 1];
    const r = rows[i];
    const release = prev.redis.find((c) => c.at > prev.upCreate);
    if (!release || r.upWrite === undefined) continue;
    (release.done >= r.upCreate && release.done < r.upWrite ? inWindow : outside).push(r.upWrite - r.upCreate);
  }
  if (inWindow.length + outside.length > 0)
    console.log(`previous release answered between upCreate and the upstream write: ${((100 * inWindow.length) / (inWindow.length + outside.length)).toFixed(0)} % of requests; upCreate→upWrite p50 then ${q(inWindow, 0.5).toFixed(3)} ms, otherwise ${q(outside, 0.5).toFixed(3)} ms`);
} finally {
  await gw?.stop(); await upstream.close?.(); closeRedis(); cleanupAll();
}
process.exit(0);
