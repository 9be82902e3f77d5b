// Streaming (SSE through the gateway vs straight to the fake upstream).
//
// TTFT: requests to each target interleaved one at a time (direct, plain proxy, gateway, direct, …)
// in rounds, time from sending the request to the arrival of the first byte of the first `data:`
// event (hrtime); median of the per-round p50/p99. Probes ask the fake upstream for short streams (bench_deltas/bench_pace_ms, unknown body
// fields the gateway passes through) so hundreds of samples fit in seconds; nothing before the first
// event depends on the stream's length.
//
// Concurrent streams: N paced streams (64 deltas, 20 ms apart: 1.3 s each) started over 500 ms, all
// open together; a stream stalls when any gap — request sent → first event, or between two chunks —
// exceeds the pacing by more than 100 ms, or when it errors or ends early. N doubles (50, 100, 200,
// …) until the gateway stalls (twice in a row at a level) or the time budget is spent; the direct
// run at each level and the gateway's event-loop delay tell whether a stall is the gateway's or the
// machine's (the load generator shares the 2 cores).
import { Pool } from 'undici';
import { median, percentile } from '../lib/stats.mjs';
import { sleep } from '../lib/procs.mjs';

const PACE_MS = 20;
const DELTAS = 64;
const STALL_MS = PACE_MS + 100;

function streamBody(extra = {}) {
  return JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }], stream: true, ...extra });
}

async function ttftOnce(pool, target, body) {
  const t0 = process.hrtime.bigint();
  const r = await pool.request({ path: target.path, method: 'POST', headers: target.headers, body });
  if (r.statusCode !== 200) {
    const text = await r.body.text();
    throw new Error(`${target.name}: status ${r.statusCode}: ${text.slice(0, 200)}`);
  }
  let first = NaN;
  let seen = '';
  for await (const chunk of r.body) {
    if (Number.isNaN(first)) {
      seen += chunk.toString();
      if (seen.includes('data:')) first = Number(process.hrtime.bigint() - t0) / 1e6;
    }
  }
  return first;
}

/**
 * targets: [{ name, url, path, headers }], the first is the baseline. Like the latency section:
 * per round p50/p99 of each target, then the median of the round values (a burst of machine noise
 * spoils one round, not the result).
 */
export async function ttft(targets, { rounds, perRound, warmup }) {
  const body = streamBody({ bench_deltas: 2, bench_pace_ms: 5 });
  const pools = targets.map((t) => new Pool(t.url, { connections: 1, keepAliveTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 }));
  try {
    for (let i = 0; i < warmup; i++) for (let t = 0; t < targets.length; t++) await ttftOnce(pools[t], targets[t], body);
    const perTarget = targets.map(() => ({ p50: [], p99: [] }));
    for (let r = 0; r < rounds; r++) {
      const samples = targets.map(() => []);
      for (let i = 0; i < perRound; i++) {
        for (let t = 0; t < targets.length; t++) samples[t].push(await ttftOnce(pools[t], targets[t], body));
      }
      samples.forEach((s, t) => {
        const sorted = s.sort((a, b) => a - b);
        perTarget[t].p50.push(percentile(sorted, 50));
        perTarget[t].p99.push(percentile(sorted, 99));
      });
    }
    const rows = targets.map((t, i) => ({ name: t.name, p50: median(perTarget[i].p50), p99: median(perTarget[i].p99), n: rounds * perRound }));
    const base = rows[0];
    return rows.map((r) => ({ ...r, addedP50: r.p50 - base.p50, addedP99: r.p99 - base.p99 }));
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}

async function oneStream(pool, target, body) {
  const t0 = performance.now();
  let last = t0;
  let maxGap = 0;
  let firstMs = NaN;
  let events = 0;
  let text = '';
  try {
    const r = await pool.request({ path: target.path, method: 'POST', headers: target.headers, body });
    if (r.statusCode !== 200) {
      await r.body.dump();
      return { ok: false, error: `status ${r.statusCode}`, maxGap, firstMs, events };
    }
    for await (const chunk of r.body) {
      const now = performance.now();
      if (Number.isNaN(firstMs)) firstMs = now - t0;
      maxGap = Math.max(maxGap, now - last);
      last = now;
      const s = chunk.toString();
      text += s.slice(-20);
      text = text.slice(-40);
      for (let i = s.indexOf('data: {'); i !== -1; i = s.indexOf('data: {', i + 1)) events++;
    }
    const complete = text.includes('[DONE]') && events >= DELTAS;
    return { ok: complete, error: complete ? null : `ended after ${events} events`, maxGap, firstMs, events };
  } catch (err) {
    return { ok: false, error: err.code ?? err.message, maxGap, firstMs, events };
  }
}

async function level(target, n, staggerMs) {
  const pool = new Pool(target.url, {
    connections: n,
    keepAliveTimeout: 5_000,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const body = streamBody();
  try {
    const started = performance.now();
    const results = await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        await sleep((i * staggerMs) / n);
        return oneStream(pool, target, body);
      }),
    );
    const stalled = results.filter((r) => !r.ok || r.maxGap > STALL_MS);
    const firsts = results.map((r) => r.firstMs).filter(Number.isFinite).sort((a, b) => a - b);
    const gaps = results.map((r) => r.maxGap).sort((a, b) => a - b);
    const errors = results.filter((r) => !r.ok);
    return {
      n,
      stalled: stalled.length,
      errors: errors.length,
      firstError: errors[0]?.error ?? null,
      ttftP99: percentile(firsts, 99),
      maxGap: gaps[gaps.length - 1] ?? NaN,
      seconds: (performance.now() - started) / 1000,
    };
  } finally {
    await pool.destroy();
  }
}

/**
 * Ramps concurrent paced streams on the gateway (and the direct baseline at the same levels).
 * `loopDelay` (optional): reads the gateway's event-loop delay since the last call, so a stall can
 * be told apart from the machine's noise (a stall with a quiet gateway loop happened elsewhere).
 * A gateway stall must reproduce: the level is run once more and fails only if it stalls again
 * (both attempts are reported), so one burst of another process on a shared machine does not end
 * the ramp. Returns { levels: [{ n, gateway, retry, direct }], maxGateway, maxDirect, stallMs }.
 */
export async function concurrentStreams(gateway, direct, { start = 50, max = 1600, budgetS = 45, staggerMs = 500, loopDelay = null }) {
  const deadline = Date.now() + budgetS * 1000;
  const levels = [];
  let maxGateway = 0;
  let maxDirect = 0;
  const onGateway = async (n) => {
    if (loopDelay) await loopDelay();
    const g = await level(gateway, n, staggerMs);
    if (loopDelay) g.loopMax = (await loopDelay()).max;
    return g;
  };
  for (let n = start; n <= max; n *= 2) {
    const d = await level(direct, n, staggerMs);
    await sleep(300);
    const g = await onGateway(n);
    let retry = null;
    if (g.stalled > 0 && Date.now() + (g.seconds + 1) * 1000 < deadline) {
      await sleep(1000);
      retry = await onGateway(n);
    }
    levels.push({ n, gateway: g, retry, direct: d });
    if (d.stalled === 0) maxDirect = n;
    if (g.stalled > 0 && (retry === null || retry.stalled > 0)) break;
    maxGateway = n;
    if (Date.now() + 4 * (g.seconds + d.seconds) * 1000 > deadline) break;
    await sleep(300);
  }
  return { levels, maxGateway, maxDirect, stallMs: STALL_MS };
}

/**
 * Streaming time to first byte at N concurrent streams (issue 14's "added TTFB p99 at 32 streams"):
 * in each round every target in turn (order rotating from round to round) gets N short streams
 * started together over one pool of N keep-alive connections; TTFB = request sent → first `data:`
 * byte. Per round p99 of the N samples, median over rounds; added = target − the first target
 * (direct) of the same run. targets: [{ name, url, path, headers }].
 */
export async function burstTtfb(targets, { streams = 32, rounds = 10, warmupRounds = 2 } = {}) {
  const body = streamBody({ bench_deltas: 2, bench_pace_ms: 5 });
  const opts = { connections: streams, keepAliveTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 };
  const pools = targets.map((t) => new Pool(t.url, opts));
  const burst = (t) => Promise.all(Array.from({ length: streams }, () => ttftOnce(pools[t], targets[t], body)));
  try {
    for (let r = 0; r < warmupRounds; r++) for (let t = 0; t < targets.length; t++) await burst(t);
    const p99s = targets.map(() => []);
    const p50s = targets.map(() => []);
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < targets.length; k++) {
        const t = (k + r) % targets.length;
        const sorted = (await burst(t)).sort((a, b) => a - b);
        p50s[t].push(percentile(sorted, 50));
        p99s[t].push(percentile(sorted, 99));
        await sleep(20);
      }
    }
    // perRoundP99: each round's p99 (round r of every target ran back to back: pairs for an A/B)
    const rows = targets.map((t, i) => ({ name: t.name, p50: median(p50s[i]), p99: median(p99s[i]), n: rounds * streams, perRoundP99: p99s[i] }));
    const base = rows[0];
    return rows.map((r) => ({ ...r, addedP50: r.p50 - base.p50, addedP99: r.p99 - base.p99 }));
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}
