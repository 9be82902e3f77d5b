// Probe (not part of `npm run bench`): the Lua cost of the two scripts of a relayed request, without
// the gateway's noise. Two modes:
//   capture: `node bench/probes/script-replay.mjs capture <out.json> [entry] [bench|real]` — a gateway build
//            against a private redis-server with MONITOR on; records the scripts' sources (SCRIPT
//            LOAD / EVAL) and the EVALSHA calls of one uncontended relayed request.
//   replay:  `node bench/probes/script-replay.mjs replay a.json,b.json [n] [rounds]` — per capture,
//            on a private redis-server: n × (admission, release) with a fresh lease id each time,
//            alternating the captures per round; prints each script's median µs (SLOWLOG), the
//            EVALSHA µs per call from commandstats and Redis CPU µs per pair. The admission runs
//            with a fresh client member and no deadline (the captured deadline has passed: replayed
//            as is, it would answer STALE and do nothing).
import { createHash } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { Redis } from 'ioredis';
import { configure, closeRedis, startGateway } from '../lib/gateway.mjs';
import { startFakeUpstream } from '../lib/fake-upstream.mjs';
import { cleanupAll, sleep } from '../lib/procs.mjs';
import { REAL_LIMITS, startPrivateRedis } from '../sections/redis-cost.mjs';

const GEN = Number(process.env.REPLAY_GEN ?? 400);
const sha1 = (s) => createHash('sha1').update(s).digest('hex');
/** MONITOR prints arguments escaped (sdscatrepr, bytes ≥ 0x80 as \\xHH): undo it. */
const unrepr = (s) =>
  Buffer.from(
    s.replace(/\\(x[0-9a-f]{2}|.)/g, (_, e) =>
      e[0] === 'x' && e.length === 3
        ? String.fromCharCode(parseInt(e.slice(1), 16))
        : ({ n: '\n', r: '\r', t: '\t', a: '\x07', b: '\b' }[e] ?? e),
    ),
    'latin1',
  ).toString('utf8');
const [mode, file, x, y] = process.argv.slice(2);

async function capture(out, entry = 'dist/src/main.js', limits = 'bench') {
  const real = limits === 'real';
  const up = await startFakeUpstream({});
  const redis = await startPrivateRedis();
  const mon = await new Redis(redis.url).monitor();
  const scripts = {};
  let calls = [];
  mon.on('monitor', (_t, raw) => {
    const args = raw.map((a) => unrepr(String(a)));
    const cmd = String(args[0]).toLowerCase();
    if (cmd === 'script' && String(args[1]).toLowerCase() === 'load') scripts[sha1(args[2])] = args[2];
    if (cmd === 'eval') scripts[sha1(args[1])] = args[1];
    if (cmd === 'evalsha' || cmd === 'eval') calls.push(args.map(String));
  });
  const gw = await startGateway('distributed', {
    redisUrl: redis.url,
    entry,
    ...(real ? { env: REAL_LIMITS.env } : {}),
  });
  const { clientKey } = await configure(gw, up.url, {
    keys: 4,
    ...(real ? { clientLimits: REAL_LIMITS.clientLimits, keyLimits: REAL_LIMITS.keyLimits } : {}),
  });
  const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] });
  const one = () =>
    fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' },
      body,
    }).then((r) => r.text());
  for (let i = 0; i < 20; i++) await one();
  await sleep(1500);
  calls = [];
  await one();
  await sleep(1500);
  const evs = calls
    .filter((c) => c[0].toLowerCase() === 'evalsha')
    .map((c) => ({ sha: c[1], numkeys: Number(c[2]), rest: c.slice(3) }));
  const need = evs.map((e) => e.sha).filter((s) => !scripts[s]);
  if (need.length) throw new Error(`no source for ${need.join(',')}`);
  writeFileSync(out, JSON.stringify({ scripts, calls: evs }, null, 1));
  console.log(`${evs.length} EVALSHA captured:`);
  for (const e of evs)
    console.log(`  ${e.sha.slice(0, 8)} keys=${e.numkeys} args=${e.rest.length - e.numkeys}`);
  mon.disconnect();
  await gw.stop();
  await redis.close();
  await up.close?.();
}

async function statsOf(c) {
  const [s, cpu] = await Promise.all([c.info('commandstats'), c.info('cpu')]);
  const m = /cmdstat_evalsha:calls=(\d+),usec=(\d+)/.exec(s);
  const g = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(cpu)?.[1] ?? NaN);
  return {
    calls: Number(m?.[1] ?? 0),
    usec: Number(m?.[2] ?? 0),
    cpu: (g('used_cpu_sys') + g('used_cpu_user')) * 1e6,
  };
}

async function replay(files, n = 2000, rounds = 2) {
  const caps = files.map((f) => ({ name: f, ...JSON.parse(readFileSync(f, 'utf8')) }));
  const redis = await startPrivateRedis();
  const c = redis.client;
  const res = {};
  try {
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 ? [...caps].reverse() : caps;
      for (const cap of order) {
        await c.flushall();
        await c.script('flush');
        for (const src of Object.values(cap.scripts)) await c.script('load', src);
        const admission = cap.calls.find((e) => cap.scripts[e.sha].includes('fg_client_evaluate'));
        const release = cap.calls.find((e) => cap.scripts[e.sha].includes('fg_contribute'));
        // the captured lease id: the selection's first arg after the gate part (also ARGV[1] of the release)
        const lease = release.rest[release.numkeys];
        // the keys' common prefix (up to the first ':' followed by a known module tag)
        const prefix = /^(.*?:)(rl|fq|kp|ad):/.exec(admission.rest[0])[1];
        const seen = new Set();
        let check = true;
        const run = async (k) => {
          for (let i = 0; i < k; i++) {
            const id = `${lease.slice(0, -8)}${String(i).padStart(8, '0')}`;
            const sub = (a) => a.map((v) => (v === lease ? id : v.replaceAll(lease, id)));
            // a fresh key generation every GEN requests (the captured prefix + a generation), so no
            // window reaches its limit: at real limits (600 rpm on the client key) the replay would
            // otherwise measure the cheap refusal path after 600 calls
            const g = `${prefix}g${Math.floor(i / GEN)}:`;
            const pk = (a, nk) =>
              a.map((v, j) => (j < nk && v.startsWith(prefix) ? g + v.slice(prefix.length) : v));
            const adm = pk(sub(admission.rest), admission.numkeys);
            // a fresh client member per request, and no deadline (the captured one has passed:
            // the admission would answer STALE and do nothing)
            adm[admission.numkeys + 2] = `${id}m`;
            adm[admission.numkeys + 3] = '0';
            const ra = await c.evalsha(admission.sha, admission.numkeys, ...adm);
            const rr = await c.evalsha(
              release.sha,
              release.numkeys,
              ...pk(sub(release.rest), release.numkeys),
            );
            if (check) {
              // the replies' shapes (numbers masked): one line per distinct shape
              const shape = (v) => JSON.stringify(v).replace(/\d+/g, '#');
              seen.add(`admission ${shape(ra[0])} provider ${shape(ra[1])}`);
              seen.add(`release ${shape(rr)}`);
            }
          }
        };
        await run(300);
        check = false;
        for (const v of seen) console.error(`  reply: ${v}`);
        await c.flushall();
        await c.config('set', 'slowlog-log-slower-than', '0');
        await c.config('set', 'slowlog-max-len', String(4 * n + 100));
        await c.slowlog('reset');
        const a = await statsOf(c);
        await run(n);
        const b = await statsOf(c);
        const log = await c.slowlog('get', String(4 * n + 100));
        await c.config('set', 'slowlog-log-slower-than', '-1');
        // the median: on a shared machine a script is now and then descheduled mid-run, and a few
        // such milliseconds would dominate a mean
        const per = (sha) => {
          const us = log
            .filter((e) => String(e[3][1]) === sha)
            .map((e) => Number(e[2]))
            .sort((x, y) => x - y);
          return us[Math.floor(us.length / 2)];
        };
        const r = (res[cap.name] ??= []);
        r.push({
          evalshaUs: (b.usec - a.usec) / (b.calls - a.calls),
          admissionUs: per(admission.sha),
          releaseUs: per(release.sha),
          cpuUsPerPair: (b.cpu - a.cpu) / n,
        });
        const l = r.at(-1);
        console.error(
          `${cap.name} round ${round + 1}: admission ${l.admissionUs.toFixed(1)} µs, release ${l.releaseUs.toFixed(1)} µs, CPU ${l.cpuUsPerPair.toFixed(1)} µs/pair`,
        );
      }
    }
  } finally {
    await redis.close();
  }
  for (const [name, r] of Object.entries(res)) {
    const avg = (k) => r.reduce((s, v) => s + v[k], 0) / r.length;
    console.log(
      `${name}: admission ${avg('admissionUs').toFixed(1)} µs, release ${avg('releaseUs').toFixed(1)} µs (slowlog median), EVALSHA ${avg('evalshaUs').toFixed(1)} µs/call (commandstats), Redis CPU ${avg('cpuUsPerPair').toFixed(1)} µs/request`,
    );
  }
}

try {
  if (mode === 'capture') await capture(file, x, y);
  else if (mode === 'replay') await replay(file.split(','), Number(x ?? 2000), Number(y ?? 2));
  else throw new Error('usage: capture <out.json> [entry] | replay a.json,b.json [n] [rounds]');
} finally {
  closeRedis();
  await cleanupAll();
}
process.exit(0);
