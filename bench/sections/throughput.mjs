// Throughput: an autocannon sweep over connection counts against one target. Per level: requests/s,
// latency p50/p99 (autocannon, ms), errors (socket errors + timeouts) and non-2xx answers, and the
// CPU time the measured process spent per request (/proc/<pid>/stat utime+stime delta ÷ requests).
// The target's "best" is the most rps at a level with p99 < 50 ms and zero errors/non-2xx.
import autocannon from 'autocannon';
import { readFileSync } from 'node:fs';
import { cpuMicros } from '../lib/procs.mjs';

export const CHAT_BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] });
export const P99_LIMIT_MS = 50;

function run(target, connections, durationS) {
  return autocannon({
    url: `${target.url}${target.path}`,
    method: 'POST',
    headers: { 'content-type': 'application/json', ...target.headers },
    body: target.body ?? CHAT_BODY,
    connections,
    pipelining: 1,
    duration: durationS,
    timeout: 10,
  });
}

/**
 * target: { name, url, path, headers, pid } (pid: the process whose CPU is charged, optional).
 * Returns { name, levels: [...], best }.
 */
export async function sweep(target, { levels, durationS, warmupS }) {
  if (warmupS > 0) await run(target, Math.max(...levels) >= 64 ? 64 : Math.max(...levels), warmupS);
  const out = [];
  for (const connections of levels) {
    const cpu0 = target.pid ? cpuMicros(target.pid) : NaN;
    const r = await run(target, connections, durationS);
    const cpu1 = target.pid ? cpuMicros(target.pid) : NaN;
    const completed = r['1xx'] + r['2xx'] + r['3xx'] + r['4xx'] + r['5xx'];
    const errors = r.errors + r.timeouts;
    out.push({
      connections,
      rps: completed / r.duration,
      p50: r.latency.p50,
      p99: r.latency.p99,
      errors,
      non2xx: r.non2xx,
      cpuUsPerReq: completed > 0 ? (cpu1 - cpu0) / completed : NaN,
      ok: errors === 0 && r.non2xx === 0 && r.latency.p99 < P99_LIMIT_MS,
    });
  }
  const eligible = out.filter((l) => l.ok);
  const best = eligible.length ? eligible.reduce((a, b) => (b.rps > a.rps ? b : a)) : null;
  return { name: target.name, levels: out, best };
}

/** CPU time all the machine's cores spent busy since boot (/proc/stat: all but idle and iowait), µs. */
function machineBusyMicros() {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1, 9).map(Number);
    const busy = f.reduce((a, b) => a + b, 0) - f[3] - f[4];
    return (busy * 1e6) / 100; // USER_HZ: /proc/stat counts in 1/100 s on Linux
  } catch {
    return NaN;
  }
}

const median = (xs) => {
  const s = xs.filter(Number.isFinite).sort((a, b) => a - b);
  if (!s.length) return NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
};

/**
 * CPU per request of `target` ÷ the reference's (issue 14's "≤ 3× the plain proxy"), measured in
 * adjacent windows: `pairs` pairs of `durationS`-long windows at `connections`, one on each, the
 * order flipping every pair, each pair's ratio taken from its two windows. The figure is the median
 * of the pairs' ratios. Why not the sweep's c=64 figures: those are single 5-s windows taken minutes
 * apart (the proxy in the baselines, a gateway after its c=1 section), and on this shared 2-core VM
 * a gateway's CPU per request moves by up to 2× between windows a minute apart (other tenants' load),
 * the proxy's by up to 5× between runs hours apart (the host's speed): docs/performance.md
 * "Embedded CPU figure: variance". Returns { pairs: [{ ref, cpu, ratio, refRps, rps }], ratio, lo,
 * hi, cpu, ref, otherCores } (cpu/ref: median µs per request of the target/reference windows;
 * otherCores: the median CPU, in cores, that processes other than this bench, `ours` and the
 * measured target used during the windows — other tenants of the machine, which inflate a gateway's
 * CPU per request more than the proxy's).
 */
export async function interleavedCpuRatio(reference, target, { pairs, durationS, connections = 64, ours = [] }) {
  const rows = [];
  for (let i = 0; i < pairs; i++) {
    const got = new Map();
    let other = 0;
    let wall = 0;
    for (const t of i % 2 ? [target, reference] : [reference, target]) {
      const ownPids = [...ours, t.pid].filter(Boolean);
      const own0 = process.cpuUsage();
      const pids0 = ownPids.map(cpuMicros);
      const m0 = machineBusyMicros();
      const t0 = performance.now();
      got.set(t, (await sweep(t, { levels: [connections], durationS, warmupS: 0 })).levels[0]);
      const own1 = process.cpuUsage(own0);
      const mine = own1.user + own1.system + ownPids.map(cpuMicros).reduce((a, v, k) => a + v - pids0[k], 0);
      other += machineBusyMicros() - m0 - mine;
      wall += (performance.now() - t0) * 1000;
    }
    const r = got.get(reference);
    const g = got.get(target);
    rows.push({ ref: r.cpuUsPerReq, cpu: g.cpuUsPerReq, ratio: g.cpuUsPerReq / r.cpuUsPerReq, refRps: r.rps, rps: g.rps, otherCores: Math.max(0, other / wall) });
  }
  const ratios = rows.map((p) => p.ratio).filter(Number.isFinite);
  return {
    pairs: rows,
    ratio: median(ratios),
    lo: Math.min(...ratios),
    hi: Math.max(...ratios),
    cpu: median(rows.map((p) => p.cpu)),
    ref: median(rows.map((p) => p.ref)),
    otherCores: median(rows.map((p) => p.otherCores)),
  };
}
