// Queue under contention: an open-loop client sends a fixed arrival rate (default 500 req/s, mixed
// priorities) at a provider whose capacity is below demand (one upstream key, fixed max_concurrent,
// a fake upstream answering after 20 ms: capacity = max_concurrent / 20 ms). Arrivals follow a
// schedule (t0 + i/rate) checked every millisecond, never waiting for answers.
//
// Reported:
//  - dispatch hand-off: the time between an upstream slot being freed (the fake upstream finished a
//    response) and the next request arriving at the upstream, pairing each arrival with the oldest
//    unpaired completion. While requests wait this is the dispatcher's own latency — release, wake,
//    admission, job take, grant, forward — i.e. how long capacity sits idle; the 20 ms of work and
//    the time spent waiting *for* capacity are excluded. This is what the dispatch target means:
//    under overload, enqueue→grant is dominated by waiting for capacity by construction.
//  - queue wait (enqueue → grant) per priority, from the x-floodgate-queue-ms header of served
//    requests, and the mean from floodgate_queue_wait_seconds (/metrics, before/after).
//  - outcomes: served, 429 queue_timeout, 503 queue_full, other.
import { Pool } from 'undici';
import { metricValue } from '../lib/gateway.mjs';
import { percentile } from '../lib/stats.mjs';
import { cpuMicros, sleep } from '../lib/procs.mjs';
import { CHAT_BODY } from './throughput.mjs';

export const QUEUE_ENV = {
  QUEUE_MAX_PER_PROVIDER: '400',
  QUEUE_TIMEOUT_URGENT_MS: '4000',
  QUEUE_TIMEOUT_HIGH_MS: '3000',
  QUEUE_TIMEOUT_NORMAL_MS: '2000',
  QUEUE_TIMEOUT_LOW_MS: '1000',
};
const MIX = [
  ['urgent', 0.1],
  ['high', 0.2],
  ['normal', 0.4],
  ['low', 0.3],
];

function pick(i) {
  // deterministic, evenly spread mix
  const x = ((i * 0.618033988749895) % 1 + 1) % 1;
  let acc = 0;
  for (const [p, share] of MIX) {
    acc += share;
    if (x < acc) return p;
  }
  return 'low';
}

export function handoffs(arrivals, finishes) {
  const events = [
    ...arrivals.map((t) => [t, 1]),
    ...finishes.map((t) => [t, 0]),
  ].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  const freed = [];
  let head = 0;
  const gaps = [];
  for (const [t, isArrival] of events) {
    if (!isArrival) freed.push(t);
    else if (head < freed.length) gaps.push(t - freed[head++]);
  }
  return gaps.sort((a, b) => a - b);
}

export async function contention(gw, upstream, clientKey, { rate = 500, seconds = 10 }) {
  const total = Math.round(rate * seconds);
  const pool = new Pool(gw.url, { connections: 2000, keepAliveTimeout: 10_000, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const outcomes = { served: 0, queue_timeout: 0, queue_full: 0, other: 0 };
  const other = new Map();
  const waits = { urgent: [], high: [], normal: [], low: [] };
  const sumBefore = await metricValue(gw, 'floodgate_queue_wait_seconds_sum');
  const countBefore = await metricValue(gw, 'floodgate_queue_wait_seconds_count');
  await fetch(`${upstream.url}/__bench/reset`, { method: 'POST' });

  const pending = [];
  let lateMs = 0;
  const send = (i) => {
    const priority = pick(i);
    return pool
      .request({
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}`, 'x-priority': priority },
        body: CHAT_BODY,
      })
      .then(async (r) => {
        const text = await r.body.text();
        if (r.statusCode === 200) {
          outcomes.served++;
          waits[priority].push(Number(r.headers['x-floodgate-queue-ms']));
          return;
        }
        let code = '';
        try {
          code = JSON.parse(text).error?.code ?? '';
        } catch {
          // not our error shape
        }
        if (r.statusCode === 429 && code === 'queue_timeout') outcomes.queue_timeout++;
        else if (r.statusCode === 503 && code === 'queue_full') outcomes.queue_full++;
        else {
          outcomes.other++;
          const k = `${r.statusCode} ${code}`;
          other.set(k, (other.get(k) ?? 0) + 1);
        }
      })
      .catch((err) => {
        outcomes.other++;
        const k = err.code ?? err.message;
        other.set(k, (other.get(k) ?? 0) + 1);
      });
  };

  const cpu0 = cpuMicros(gw.pid);
  const t0 = performance.now();
  await new Promise((resolve) => {
    let i = 0;
    const tick = () => {
      const now = performance.now();
      const due = Math.min(total, Math.floor(((now - t0) * rate) / 1000) + 1);
      if (due - i > 1) lateMs = Math.max(lateMs, now - (t0 + (i * 1000) / rate));
      while (i < due) pending.push(send(i++));
      if (i >= total) {
        clearInterval(timer);
        resolve();
      }
    };
    const timer = setInterval(tick, 1);
    tick();
  });
  const sentSeconds = (performance.now() - t0) / 1000;
  const gatewayCpu = (cpuMicros(gw.pid) - cpu0) / 1e6 / sentSeconds;
  // every request ends within its priority's queue timeout plus one upstream answer
  await Promise.race([Promise.all(pending), sleep(20_000)]);
  await pool.destroy();

  const stats = await (await fetch(`${upstream.url}/__bench/stats`)).json();
  const gaps = handoffs(stats.arrivals, stats.finishes);
  const sumAfter = await metricValue(gw, 'floodgate_queue_wait_seconds_sum');
  const countAfter = await metricValue(gw, 'floodgate_queue_wait_seconds_count');
  const byPriority = Object.fromEntries(
    Object.entries(waits).map(([p, w]) => {
      const s = w.filter(Number.isFinite).sort((a, b) => a - b);
      return [p, { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99) }];
    }),
  );
  return {
    sent: total,
    offeredRate: total / sentSeconds,
    gatewayCpu,
    lateMs,
    outcomes,
    other: Object.fromEntries(other),
    handoff: { n: gaps.length, p50: percentile(gaps, 50), p99: percentile(gaps, 99) },
    upstreamServed: stats.finishes.length,
    byPriority,
    metricsMeanMs: ((sumAfter - sumBefore) / (countAfter - countBefore)) * 1000,
    metricsCount: countAfter - countBefore,
  };
}
