// Throughput: an autocannon sweep over connection counts against one target. Per level: requests/s,
// latency p50/p99 (autocannon, ms), errors (socket errors + timeouts) and non-2xx answers, and the
// CPU time the measured process spent per request (/proc/<pid>/stat utime+stime delta ÷ requests).
// The target's "best" is the most rps at a level with p99 < 50 ms and zero errors/non-2xx.
import autocannon from 'autocannon';
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
