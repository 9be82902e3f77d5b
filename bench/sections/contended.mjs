// Contended path at the upstream's pace: a closed loop of `clients` (default 64) connections, each
// sending its next request as soon as the previous one is answered, at one upstream key with a
// fixed max_concurrent (default 8) in front of a fake upstream answering after 20 ms. The upstream's
// capacity is max_concurrent / 20 ms (400 req/s); with more clients than slots the queue always
// holds waiters, so every gap between a slot freeing and the next request reaching the upstream is
// capacity lost. Distributed runs two gateway instances of one cluster (same database and Redis
// prefix) with the clients split evenly between them, so half of the hand-offs cross instances.
//
// Reported per mode: served req/s (answered 200 by the gateway and counted by the upstream) against
// capacity, and the dispatch hand-off (upstream slot freed → next request arrives, see queue.mjs).
// The section also measures its reference the same way: a plain proxy with a FIFO semaphore of
// max_concurrent (bench/lib/plain-proxy.mjs) — the upstream's 20 ms timer, the loopback and the
// load generator sharing the cores leave even a perfect in-process hand-off short of 100 %.
// `raw`: also return the upstream's arrival/finish times (for probes of the hand-off).
import { Pool } from 'undici';
import { cpuMicros } from '../lib/procs.mjs';
import { percentile } from '../lib/stats.mjs';
import { handoffs } from './queue.mjs';
import { CHAT_BODY } from './throughput.mjs';

export const CONTENDED = { maxConcurrent: 8, upstreamDelayMs: 20 };

/** `gateways`: the instances to spread the clients over (round robin). */
export async function contendedClosedLoop(gateways, upstream, clientKey, { clients = 64, seconds = 10, warmupS = 2, raw = false }) {
  const pools = gateways.map(
    (gw) => new Pool(gw.url, { connections: clients, keepAliveTimeout: 10_000, headersTimeout: 60_000, bodyTimeout: 60_000 }),
  );
  const outcomes = { served: 0, other: 0 };
  const other = new Map();
  let measuring = false;
  let stop = false;
  const one = async (pool) => {
    try {
      const r = await pool.request({
        path: '/v1/chat/completions',
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` },
        body: CHAT_BODY,
      });
      const text = await r.body.text();
      if (!measuring) return;
      if (r.statusCode === 200) outcomes.served++;
      else {
        outcomes.other++;
        let code = '';
        try {
          code = JSON.parse(text).error?.code ?? '';
        } catch {
          // not our error shape
        }
        other.set(`${r.statusCode} ${code}`, (other.get(`${r.statusCode} ${code}`) ?? 0) + 1);
      }
    } catch (err) {
      if (!measuring) return;
      outcomes.other++;
      const k = err.code ?? err.message;
      other.set(k, (other.get(k) ?? 0) + 1);
    }
  };
  const loops = Array.from({ length: clients }, async (_, i) => {
    const pool = pools[i % pools.length];
    while (!stop) await one(pool);
  });
  await new Promise((r) => setTimeout(r, warmupS * 1000));
  await fetch(`${upstream.url}/__bench/reset`, { method: 'POST' });
  measuring = true;
  const cpu0 = gateways.map((gw) => cpuMicros(gw.pid));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, seconds * 1000));
  const elapsedS = (performance.now() - t0) / 1000;
  const cpu = gateways.reduce((sum, gw, i) => sum + cpuMicros(gw.pid) - cpu0[i], 0);
  const stats = await (await fetch(`${upstream.url}/__bench/stats`)).json();
  measuring = false;
  stop = true;
  await Promise.race([Promise.all(loops), new Promise((r) => setTimeout(r, 20_000))]);
  await Promise.all(pools.map((p) => p.destroy()));
  const capacity = CONTENDED.maxConcurrent / (CONTENDED.upstreamDelayMs / 1000);
  const gaps = handoffs(stats.arrivals, stats.finishes);
  const upstreamRate = stats.finishes.length / elapsedS;
  // The upstream's own time per request (arrival → response finished): its 20 ms timer fires late
  // (Node timers have 1 ms resolution, and the process shares the cores), so even a gateway that
  // hands a slot over in zero time serves at most maxConcurrent ÷ this, not ÷ 20 ms.
  const services = stats.services ?? [];
  const serviceMs = services.length ? services.reduce((a, b) => a + b, 0) / services.length : NaN;
  return {
    instances: gateways.length,
    clients,
    capacity,
    servedRate: outcomes.served / elapsedS,
    upstreamRate,
    share: upstreamRate / capacity,
    /** Mean upstream time per request (ms) and the share of the upstream's slot time it was busy. */
    serviceMs,
    busyShare: (upstreamRate * serviceMs) / 1000 / CONTENDED.maxConcurrent,
    outcomes,
    other: Object.fromEntries(other),
    handoff: { n: gaps.length, p50: percentile(gaps, 50), p99: percentile(gaps, 99) },
    /** Gateway CPU (all instances) per request served, µs: what the contended path costs, whatever the load. */
    cpuPerServedUs: outcomes.served ? cpu / outcomes.served : NaN,
    /** Gateway CPU (all instances) in cores during the measurement. */
    gatewayCores: cpu / 1e6 / elapsedS,
    ...(raw ? { raw: stats } : {}),
  };
}
