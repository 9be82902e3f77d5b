import { bearer } from './auth.js';
import { sleep } from './cluster.js';

/** One client request of a paced load, as the client saw it. */
export interface PacedResult {
  /** The gateway the request went to. */
  url: string;
  /** performance.now() at send / at the end of the body. */
  start: number;
  end: number;
  stream: boolean;
  /** HTTP status; -1 = no answer within the client deadline (a hang), 0 = connection error. */
  status: number;
  /** The error body's type/code (non-200), or the SSE error event's (200 streams that failed). */
  type: string | null;
  code: string | null;
  retryAfter: string | null;
  /** The body was the one error shape (non-200 only). */
  errorShape: boolean;
  detail?: string;
}

export interface PacedLoadOptions {
  /** Gateway URLs; clients are spread over them round-robin. */
  urls: string[];
  apiKey: string;
  model: string;
  clients: number;
  /** Each client sends one request every `everyMs` (not waiting for the previous one). */
  everyMs: number;
  /** Every n-th client streams. */
  streamEvery: number;
  /** A request with no complete answer after this long counts as hung (status -1). */
  deadlineMs: number;
}

/**
 * A paced load: `clients` clients, each firing a request every `everyMs` until `stop()`; `stop()`
 * waits for every request sent to end (each bounded by `deadlineMs`) and returns them all.
 */
export function pacedLoad(o: PacedLoadOptions): { stop(): Promise<PacedResult[]>; results: PacedResult[] } {
  const results: PacedResult[] = [];
  const pending = new Set<Promise<void>>();
  let running = true;
  const one = async (url: string, stream: boolean, tag: string): Promise<void> => {
    const r: PacedResult = {
      url,
      start: performance.now(),
      end: 0,
      stream,
      status: 0,
      type: null,
      code: null,
      retryAfter: null,
      errorShape: false,
    };
    try {
      const res = await fetch(`${url}/v1/chat/completions`, {
        method: 'POST',
        headers: bearer(o.apiKey),
        body: JSON.stringify({ model: o.model, messages: [{ role: 'user', content: tag }], stream }),
        signal: AbortSignal.timeout(o.deadlineMs),
      });
      r.status = res.status;
      r.retryAfter = res.headers.get('retry-after');
      const text = await res.text();
      if (res.status !== 200) {
        try {
          const e = (JSON.parse(text) as { error?: Record<string, unknown> }).error;
          r.type = typeof e?.type === 'string' ? e.type : null;
          r.code = typeof e?.code === 'string' ? e.code : null;
          r.errorShape =
            !!e && typeof e.type === 'string' && typeof e.code === 'string' && typeof e.message === 'string';
        } catch {
          r.detail = text.slice(0, 200);
        }
      } else if (stream && /"error"\s*:/.test(text)) {
        const m = /"type"\s*:\s*"([^"]+)"[\s\S]*?"code"\s*:\s*"([^"]+)"/.exec(text);
        r.type = m?.[1] ?? 'stream_error';
        r.code = m?.[2] ?? null;
      }
    } catch (err) {
      const name = (err as Error).name;
      r.status = name === 'TimeoutError' || name === 'AbortError' ? -1 : 0;
      r.detail = (err as Error).message;
    }
    r.end = performance.now();
    results.push(r);
  };
  const clients = Array.from({ length: o.clients }, async (_, i) => {
    const url = o.urls[i % o.urls.length]!;
    const stream = o.streamEvery > 0 && i % o.streamEvery === 0;
    await sleep((o.everyMs * i) / o.clients);
    let n = 0;
    while (running) {
      const p = one(url, stream, `c${i}-${n++}`);
      pending.add(p);
      void p.finally(() => pending.delete(p));
      await sleep(o.everyMs);
    }
  });
  return {
    results,
    stop: async () => {
      running = false;
      await Promise.all(clients);
      while (pending.size > 0) await Promise.allSettled([...pending]);
      return results;
    },
  };
}

/** Events per second in [from, to) of the given times (ms). */
export function rate(times: readonly number[], from: number, to: number): number {
  return (times.filter((t) => t >= from && t < to).length * 1000) / Math.max(1, to - from);
}
