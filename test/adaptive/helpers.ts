import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { AdaptiveService } from '../../src/adaptive/services/adaptive.service.js';
import { KeyPoolService } from '../../src/key-pool/services/key-pool.service.js';
import type { AcquireOptions, KeyLease } from '../../src/key-pool/key-pool.types.js';

export { adminClient, newAdminKey, seedProvider, sleep, startOn, type Admin } from '../key-pool/helpers.js';

export function services(gw: { app: NestFastifyApplication }): {
  pool: KeyPoolService;
  adaptive: AdaptiveService;
} {
  return { pool: gw.app.get(KeyPoolService), adaptive: gw.app.get(AdaptiveService) };
}

export interface LoadOptions {
  /** One entry per gateway instance; clients are spread over them round-robin. */
  instances: { pool: KeyPoolService; adaptive: AdaptiveService }[];
  providerId: string;
  clients: number;
  /** Stop after this many upstream requests … */
  requests?: number;
  /** … or after this long (ms). */
  durationMs?: number;
  /** Compose the retreat bucket into admission (what the relay does). */
  retreatGate?: boolean;
  /** Stop once this returns true (checked before each request). */
  until?: () => boolean;
  /** Called after each upstream answer with its status and the number of answers so far. */
  onAnswer?: (status: number, answers: number) => void;
}

export interface LoadResult {
  /** Upstream status per request, in completion order. */
  statuses: number[];
  upstream429: number;
  refusals: number;
}

/**
 * The relay's loop without the relay: acquire a lease (waiting briefly when refused), send the
 * request to the upstream over real HTTP, report the outcome (status, headers, tokens, the upstream's
 * error object). `clients` of these run concurrently.
 */
export async function driveLoad(o: LoadOptions): Promise<LoadResult> {
  const statuses: number[] = [];
  let started = 0;
  let refusals = 0;
  const deadline = o.durationMs !== undefined ? Date.now() + o.durationMs : Infinity;
  const more = () =>
    (o.requests === undefined || started < o.requests) && Date.now() < deadline && !(o.until?.() ?? false);
  const worker = async (w: number) => {
    const { pool, adaptive } = o.instances[w % o.instances.length]!;
    while (more()) {
      const options: AcquireOptions = {};
      if (o.retreatGate) {
        const g = adaptive.retreatGate();
        options.gate = { gate: g.gate, ...g.inputs(o.providerId) };
      }
      const r = await pool.acquire(o.providerId, options);
      if (!r.ok) {
        refusals++;
        await new Promise((res) => setTimeout(res, Math.max(1, Math.min(r.refusal.retryAfterMs, 10))));
        continue;
      }
      if (!more()) {
        await pool.report(r.lease, { notSent: true });
        break;
      }
      started++;
      const status = await call(pool, r.lease);
      statuses.push(status);
      o.onAnswer?.(status, statuses.length);
    }
  };
  await Promise.all(Array.from({ length: o.clients }, (_, w) => worker(w)));
  await Promise.all(o.instances.map((i) => i.adaptive.idle()));
  return { statuses, upstream429: statuses.filter((s) => s === 429).length, refusals };
}

async function call(pool: KeyPoolService, lease: KeyLease): Promise<number> {
  try {
    const res = await fetch(`${lease.baseUrl}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${lease.apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] }),
    });
    const body = (await res.json().catch(() => ({}))) as {
      usage?: { total_tokens?: number };
      error?: Record<string, string | null>;
    };
    await pool.report(lease, {
      status: res.status,
      headers: Object.fromEntries(res.headers),
      tokens: body.usage?.total_tokens ?? 0,
      upstreamError: res.status >= 400 ? (body.error ?? null) : null,
    });
    return res.status;
  } catch {
    await pool.report(lease, { error: 'connect' });
    return 0;
  }
}

export async function waitFor<T>(
  probe: () => Promise<T> | T,
  ok: (v: T) => boolean,
  timeoutMs: number,
  stepMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline)
      throw new Error(`condition not met within ${timeoutMs} ms (last value ${JSON.stringify(v)})`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
