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
  const pools = targets.map((t) => new Pool(t.url, { connections: 1, keepAliveTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 }));
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

/**
 * Like interleavedLatency, for many targets against one baseline without keeping every target's
 * process cold: in each round every target in turn (the order rotating from round to round) gets
 * a block of `perRound` requests, alternating one to the baseline and one to the target. Each
 * target's added latency is computed against the baseline samples of its own block (same moment,
 * same noise), per round, and the median over rounds is reported. Used by the feature ladder, where
 * seven gateway processes idling in turn would otherwise each answer cache-cold.
 */
export async function blockLatency(baseline, targets, { rounds = 10, perRound = 100, warmup = 200 } = {}) {
  const opts = { connections: 1, keepAliveTimeout: 60_000, headersTimeout: 10_000, bodyTimeout: 10_000 };
  const basePool = new Pool(baseline.url, opts);
  const pools = targets.map((t) => new Pool(t.url, opts));
  try {
    for (let t = 0; t < targets.length; t++) {
      for (let i = 0; i < warmup; i++) {
        await once(basePool, baseline.path, baseline.headers);
        await once(pools[t], targets[t].path, targets[t].headers);
      }
    }
    const acc = targets.map(() => ({ p50: [], p99: [], base50: [], base99: [], added50: [], added99: [] }));
    for (let r = 0; r < rounds; r++) {
      for (let k = 0; k < targets.length; k++) {
        const t = (k + r) % targets.length;
        const base = [];
        const mine = [];
        for (let i = 0; i < perRound; i++) {
          base.push(await once(basePool, baseline.path, baseline.headers));
          mine.push(await once(pools[t], targets[t].path, targets[t].headers));
        }
        const b = summarize(base);
        const m = summarize(mine);
        const a = acc[t];
        a.p50.push(m.p50);
        a.p99.push(m.p99);
        a.base50.push(b.p50);
        a.base99.push(b.p99);
        a.added50.push(m.p50 - b.p50);
        a.added99.push(m.p99 - b.p99);
      }
    }
    return targets.map((t, i) => {
      const a = acc[i];
      return {
        name: t.name,
        p50: median(a.p50),
        p99: median(a.p99),
        baseP50: median(a.base50),
        baseP99: median(a.base99),
        addedP50: median(a.added50),
        addedP99: median(a.added99),
      };
    });
  } finally {
    await Promise.all([basePool.close(), ...pools.map((p) => p.close())]);
  }
}
