// Probe (not part of `npm run bench`): attributes the Lua time of a captured request's two scripts
// (bench/probes/script-replay.mjs capture … real) to their parts, by running variants of the
// sources side by side on a private redis-server: each variant is the captured source with a
// `return` (or another edit) at a marker, so the difference between two variants is the cost of
// the part between their markers. Usage:
//   node bench/probes/script-variants.mjs <capture.json> [n] [rounds]
// Prints, per variant, the median µs of one call (SLOWLOG, Redis' own timing of the command) and
// Redis CPU µs per call (INFO cpu), alternating the variants per round.
import { readFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { startPrivateRedis } from '../sections/redis-cost.mjs';
import { closeRedis } from '../lib/gateway.mjs';
import { cleanupAll } from '../lib/procs.mjs';

const sha1 = (s) => createHash('sha1').update(s).digest('hex');
const [file, nArg, rArg] = process.argv.slice(2);
const n = Number(nArg ?? 1500);
const rounds = Number(rArg ?? 3);
const GEN = 400;
// REPLAY_PACE_MS=2: a pause between requests, as the bench's c=1 phase has (~2 ms per request):
// Redis then runs each script with caches the other processes have since used (cold)
const PACE = Number(process.env.REPLAY_PACE_MS ?? 0);
const pause = (ms) => new Promise((r) => setTimeout(r, ms));
const cap = JSON.parse(readFileSync(file, 'utf8'));
const admission = cap.calls.find((e) => cap.scripts[e.sha].includes('fg_client_evaluate'));
const release = cap.calls.find((e) => cap.scripts[e.sha].includes('fg_contribute'));
const A = cap.scripts[admission.sha];
const R = cap.scripts[release.sha];
const lease = release.rest[release.numkeys];
const prefix = /^(.*?:)(rl|fq|kp|ad):/.exec(admission.rest[0])[1];

/** The source with `text` inserted before the (unique, last) occurrence of `marker`. */
function at(src, marker, text) {
  const i = src.lastIndexOf(marker);
  if (i < 0) throw new Error(`marker not found: ${marker}`);
  return src.slice(0, i) + text + src.slice(i);
}
const body = (src) => src.lastIndexOf("local t = redis.call('TIME')");

// Variants: [name, which script, source]
const ONLY = process.env.VARIANTS ? new RegExp(process.env.VARIANTS) : null;
const V0 = [
  ['admission: full', 'a', A],
  ['admission: empty body (return first)', 'a', at(A, "local t = redis.call('TIME')", 'do return 0 end\n')],
  [
    'admission: client evaluate only',
    'a',
    at(A, 'if client.stale or not client.all_ok then', 'do return 0 end\n'),
  ],
  [
    'admission: client evaluate + reply (no provider)',
    'a',
    at(A, 'local provider = fg_provider(', 'do return { fg_client_reply(client, true), {} } end\n'),
  ],
  [
    'admission: provider gates only (no selection)',
    'a',
    at(A, '  local r = fg_select(K, A, now, ko + gk, ao + 2 + ga)', '  do return {0} end\n'),
  ],
  [
    'admission: provider gates + selection choice (no lease commit)',
    'a',
    at(A, "  local seq = call('INCR', K[ko + 1])", '  do return {0} end\n'),
  ],
  [
    'admission: provider gates + selection, no gate commit',
    'a',
    at(A, '  if r[1] == 1 then local sa = ao + 2 + ga; local out = fg_gate_commit(', '  do return r end\n'),
  ],
  ['admission: empty script, same args', 'a', 'return 0'],
  ['both: empty scripts, same args (the floor of 2 EVALSHA)', 'b', 'return 0'],
  ['release: full', 'r', R],
  ['release: empty body', 'r', at(R, "local t = redis.call('TIME')", 'do return 0 end\n')],
  [
    'release: no contribution',
    'r',
    at(R, 'if fg_contribute ~= nil and (gk > 0', 'do return {cd, inFlight, now} end\n'),
  ],
  ['release: empty script, same args', 'r', 'return 0'],
];
const V = V0.filter((v) => !ONLY || ONLY.test(v[0]));
for (const v of V) if (body(v[2]) < 0 && v[2] !== 'return 0') console.error(`(no TIME marker in ${v[0]})`);

const redis = await startPrivateRedis();
const c = redis.client;
const res = {};
try {
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 ? [...V].reverse() : V;
    for (const [name, which, src] of order) {
      await c.flushall();
      await c.script('flush');
      const srcA = which === 'a' || which === 'b' ? src : A;
      const srcR = which === 'r' || which === 'b' ? src : R;
      const shaA = sha1(srcA);
      const shaR = sha1(srcR);
      await c.script('load', srcA);
      await c.script('load', srcR);
      const target = which === 'a' ? shaA : shaR;
      const run = async (k) => {
        for (let i = 0; i < k; i++) {
          const id = `${lease.slice(0, -8)}${String(i).padStart(8, '0')}`;
          const sub = (a) => a.map((v) => (v === lease ? id : v.replaceAll(lease, id)));
          const g = `${prefix}g${Math.floor(i / GEN)}:`;
          const pk = (a, nk) =>
            a.map((v, j) => (j < nk && v.startsWith(prefix) ? g + v.slice(prefix.length) : v));
          const adm = pk(sub(admission.rest), admission.numkeys);
          adm[admission.numkeys + 2] = `${id}m`;
          adm[admission.numkeys + 3] = '0';
          await c.evalsha(shaA, admission.numkeys, ...adm);
          await c.evalsha(shaR, release.numkeys, ...pk(sub(release.rest), release.numkeys));
          if (PACE > 0) await pause(PACE);
        }
      };
      await run(200);
      await c.flushall();
      await c.config('set', 'slowlog-log-slower-than', '0');
      await c.config('set', 'slowlog-max-len', String(2 * n + 100));
      await c.slowlog('reset');
      const cpu0 = await cpuUs(c);
      await run(n);
      const cpu1 = await cpuUs(c);
      const log = await c.slowlog('get', String(2 * n + 100));
      await c.config('set', 'slowlog-log-slower-than', '-1');
      const us = log
        .filter((e) => String(e[3][1]) === target)
        .map((e) => Number(e[2]))
        .sort((x, y) => x - y);
      (res[name] ??= []).push({
        med: us[Math.floor(us.length / 2)],
        mean: us.reduce((s, x) => s + x, 0) / us.length,
        pairCpu: (cpu1 - cpu0) / n,
      });
    }
  }
} finally {
  await redis.close();
  closeRedis();
  await cleanupAll();
}
const avg = (r, k) => r.reduce((s, v) => s + v[k], 0) / r.length;
for (const [name, r] of Object.entries(res))
  console.log(
    `${name.padEnd(52)} median ${avg(r, 'med').toFixed(1).padStart(6)} µs  mean ${avg(r, 'mean').toFixed(1).padStart(6)} µs  (Redis CPU per admission+release pair ${avg(r, 'pairCpu').toFixed(1)} µs)`,
  );
process.exit(0);

async function cpuUs(cl) {
  const s = await cl.info('cpu');
  const g = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(s)?.[1] ?? NaN);
  return (g('used_cpu_sys') + g('used_cpu_user')) * 1e6;
}
