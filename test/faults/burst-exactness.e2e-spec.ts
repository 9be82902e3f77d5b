import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createUserWithKey, newApiKey } from '../support/auth.js';
import { percentile, spawnLive } from '../support/cluster.js';
import { isolatedEnv, type GatewayProcess } from '../support/gateway.js';

/**
 * Burst exactness on two instances. Two real gateway processes (`node dist/src/main.js`) share one
 * Postgres and one healthy Redis; the load generator is this process, on the same (small) machine.
 * A client key limited to 50 requests per minute; RUNS times, a fresh key and BURST concurrent
 * requests split over both instances.
 *
 * Pass criteria, every run: exactly 50 admitted (200, each with X-RateLimit-* headers: decided by
 * Redis, never by the failure mode); every other answer is 429 rate_limit_error with Retry-After, or
 * 503 with Retry-After (load shed) — counted, never admitted; no other status. RATE_LIMIT_FAILURE_MODE
 * is `open` (the default): a healthy-but-busy deployment that mistook its own load for a Redis
 * outage would admit past the limit here.
 */
const RUNS = 20;
const BURST = 400;
const KEY_RPM = 50;

interface Answer {
  status: number;
  ms: number;
  limitHeader: string | null;
  retryAfter: string | null;
  type: string | undefined;
}

async function hit(url: string, key: string): Promise<Answer> {
  const started = performance.now();
  try {
    const res = await fetch(`${url}/api/me`, { headers: { authorization: `Bearer ${key}` } });
    const text = await res.text();
    let type: string | undefined;
    try {
      type = (JSON.parse(text) as { error?: { type?: string } }).error?.type;
    } catch {
      type = undefined;
    }
    return {
      status: res.status,
      ms: performance.now() - started,
      limitHeader: res.headers.get('x-ratelimit-limit'),
      retryAfter: res.headers.get('retry-after'),
      type,
    };
  } catch (err) {
    return {
      status: 0,
      ms: performance.now() - started,
      limitHeader: null,
      retryAfter: null,
      type: String(err),
    };
  }
}

interface Metrics {
  /** Decisions Redis could not make, by cause (floodgate_rate_limit_store_unavailable_total). */
  unavailable: Record<string, number>;
  /** Decision latency histogram, cumulative, summed over results: upper bound (s) → count. */
  buckets: Map<number, number>;
}

/** The limiter's own counters and decision-latency histogram, from /metrics. */
async function limiterMetrics(url: string): Promise<Metrics> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const buckets = new Map<number, number>();
  const unavailable: Record<string, number> = {};
  for (const line of text.split('\n')) {
    let m = /^floodgate_rate_limit_decision_seconds_bucket\{([^}]*)\} (\d+)/.exec(line);
    const le = m ? /le="([^"]+)"/.exec(m[1]!)?.[1] : undefined;
    if (m && le) {
      const bound = le === '+Inf' ? Infinity : Number(le);
      buckets.set(bound, (buckets.get(bound) ?? 0) + Number(m[2]));
    }
    m = /^floodgate_rate_limit_store_unavailable_total\{[^}]*cause="([^"]+)"[^}]*\} (\d+)/.exec(line);
    if (m) unavailable[m[1]!] = (unavailable[m[1]!] ?? 0) + Number(m[2]);
  }
  return { unavailable, buckets };
}

/** Quantile q of a cumulative histogram, interpolated linearly inside its bucket (ms). */
function bucketQuantile(buckets: Map<number, number>, q: number): string {
  const sorted = [...buckets].sort((x, y) => x[0] - y[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  let lower = 0;
  let below = 0;
  for (const [le, count] of sorted) {
    if (count >= q * total && count > below) {
      if (le === Infinity) return `>${lower * 1000}`;
      const ms = (lower + ((q * total - below) / (count - below)) * (le - lower)) * 1000;
      return `~${ms.toFixed(0)} (bucket ≤${le * 1000})`;
    }
    lower = le;
    below = count;
  }
  return 'n/a';
}

describe('burst exactness on two instances (distributed, healthy Redis)', () => {
  let cleanup: () => Promise<void>;
  let a: GatewayProcess;
  let b: GatewayProcess;
  const adminKey = newApiKey();

  beforeAll(async () => {
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      LOG_LEVEL: 'warn',
      RATE_LIMIT_FAILURE_MODE: 'open',
      // What this test is about is the gateway's own loop being saturated. The shared test Redis runs
      // on the same two cores as both gateways and the load generator, and a Redis starved of CPU for
      // more than 100 ms is, by definition, silent (docs/reliability.md): seen once at load 11, it
      // made this test measure the machine. 500 ms keeps "Redis silent" out of a healthy run while the
      // gateway-side delays this test provokes (p99 decision 0.8–1.6 s) stay far beyond it.
      RATE_LIMIT_TIMEOUT_MS: '500',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_IP_RPM: '1000000',
      RATE_LIMIT_IP_BURST: '1000000',
    });
    cleanup = isolated.cleanup;
    a = await spawnLive(isolated.env); // runs the migrations and creates the admin first
    b = await spawnLive(isolated.env);
  });
  afterAll(async () => {
    await Promise.all([a?.stop(), b?.stop()]);
    await cleanup?.();
  });

  it(`${RUNS} bursts of ${BURST} concurrent requests at ${KEY_RPM}/min: exactly ${KEY_RPM} admitted every time`, async () => {
    const results: { admitted: number; headerless: number; limited: number; shed: number; other: number }[] =
      [];
    const latencies: number[] = [];
    for (let run = 0; run < RUNS; run++) {
      const { key } = await createUserWithKey(a, adminKey, 'user', { key: { limits: { rpm: KEY_RPM } } });
      // one request on each instance first, so both know the key (auth caches) — then the burst
      const answers = await Promise.all(
        Array.from({ length: BURST }, (_, i) => hit(i % 2 === 0 ? a.url : b.url, key)),
      );
      latencies.push(...answers.map((x) => x.ms));
      const ok = answers.filter((x) => x.status === 200);
      results.push({
        admitted: ok.length,
        headerless: ok.filter((x) => x.limitHeader === null).length,
        limited: answers.filter(
          (x) => x.status === 429 && x.type === 'rate_limit_error' && Number(x.retryAfter) >= 1,
        ).length,
        shed: answers.filter(
          (x) => x.status === 503 && x.type === 'service_unavailable_error' && Number(x.retryAfter) >= 1,
        ).length,
        other: answers.filter((x) => ![200, 429, 503].includes(x.status)).length,
      });
    }
    const logs = [a.output(), b.output()].join('\n');
    const failOpenLines = logs.split('\n').filter((l) => /failing open/.test(l));
    const [ma, mb] = await Promise.all([limiterMetrics(a.url), limiterMetrics(b.url)]);
    const buckets = new Map([...ma.buckets].map(([le, n]) => [le, n + (mb.buckets.get(le) ?? 0)]));
    console.log(
      `[faults] burst exactness: admitted per run ${results.map((r) => r.admitted).join(' ')}; ` +
        `headerless 200s ${results.reduce((s, r) => s + r.headerless, 0)}, ` +
        `429 ${results.reduce((s, r) => s + r.limited, 0)}, 503 shed ${results.reduce((s, r) => s + r.shed, 0)}, ` +
        `other ${results.reduce((s, r) => s + r.other, 0)}; request p50 ${percentile(latencies, 0.5).toFixed(0)} ms ` +
        `p99 ${percentile(latencies, 0.99).toFixed(0)} ms; decision p50 ${bucketQuantile(buckets, 0.5)} ms ` +
        `p99 ${bucketQuantile(buckets, 0.99)} ms (histogram buckets); store unavailable by cause ` +
        `${JSON.stringify(ma.unavailable)} / ${JSON.stringify(mb.unavailable)}; fail-open log lines ${failOpenLines.length}` +
        (failOpenLines[0] ? ` (${failOpenLines[0].slice(0, 300)})` : ''),
    );
    for (const r of results) {
      expect(r).toEqual({ admitted: KEY_RPM, headerless: 0, limited: r.limited, shed: r.shed, other: 0 });
      expect(r.limited + r.shed).toBe(BURST - KEY_RPM);
    }
    expect(failOpenLines).toEqual([]);
  });
});
