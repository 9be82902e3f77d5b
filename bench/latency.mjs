// Added latency at concurrency 1, non-streaming: requests to the gateway and to the baseline are
// interleaved in rounds (so machine noise hits both alike); per round p50/p99 of each, then the
// median of the round values. hrtime-based client over a keep-alive undici pool.
import { Pool } from 'undici';
import { median, summarize } from './lib/stats.mjs';

const BODY = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] });

async function once(pool, path, headers) {
  const t0 = process.hrtime.bigint();
  const r = await pool.request({ path, method: 'POST', headers, body: BODY });
  await r.body.text();
  if (r.statusCode !== 200) throw new Error(`status ${r.statusCode} from ${path}`);
  return Number(process.hrtime.bigint() - t0) / 1e6;
}

/**
 * targets: [{ name, url, path, headers }]; the first is the baseline. Returns per target
 * { p50, p99 } (median of round values) and the added latency vs the baseline.
 */
export async function interleavedLatency(targets, { rounds = 15, perRound = 100, warmup = 300 } = {}) {
  const pools = targets.map((t) => new Pool(t.url, { connections: 1, keepAliveTimeout: 60_000 }));
  try {
    for (let i = 0; i < warmup; i++) for (let t = 0; t < targets.length; t++) await once(pools[t], targets[t].path, targets[t].headers);
    const perTarget = targets.map(() => ({ p50: [], p99: [] }));
    for (let r = 0; r < rounds; r++) {
      const samples = targets.map(() => []);
      for (let i = 0; i < perRound; i++) {
        for (let t = 0; t < targets.length; t++) samples[t].push(await once(pools[t], targets[t].path, targets[t].headers));
      }
      samples.forEach((s, t) => {
        const { p50, p99 } = summarize(s);
        perTarget[t].p50.push(p50);
        perTarget[t].p99.push(p99);
      });
    }
    const result = targets.map((t, i) => ({ name: t.name, p50: median(perTarget[i].p50), p99: median(perTarget[i].p99) }));
    const base = result[0];
    return result.map((r) => ({ ...r, addedP50: r.p50 - base.p50, addedP99: r.p99 - base.p99 }));
  } finally {
    await Promise.all(pools.map((p) => p.close()));
  }
}
