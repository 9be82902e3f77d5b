import { randomBytes } from 'node:crypto';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tracingEnabled } from '../../src/observability/tracing.js';
import { bearer, newApiKey } from '../support/auth.js';
import {
  freePort,
  getJson,
  isolatedEnv,
  spawnGateway,
  startGateway,
  type GatewayProcess,
} from '../support/gateway.js';

interface OtlpSpan {
  traceId: string;
  spanId: string;
  parentSpanId?: string;
  name: string;
  kind: number;
  attributes: { key: string; value: Record<string, unknown> }[];
}

/** A local OTLP/HTTP receiver: records every JSON POST to /v1/traces. */
class OtlpStub {
  readonly posts: { path: string; contentType: string | undefined; body: any }[] = [];
  private server = http.createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      let body: unknown = text;
      try {
        body = JSON.parse(text);
      } catch {
        // not JSON: kept as text, the test fails on it
      }
      this.posts.push({ path: req.url ?? '', contentType: req.headers['content-type'], body });
      res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
    });
  });

  async start(): Promise<string> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
  }

  spans(): OtlpSpan[] {
    return this.posts.flatMap((p) =>
      (p.body.resourceSpans ?? []).flatMap((rs: any) =>
        rs.scopeSpans.flatMap((ss: any) => ss.spans as OtlpSpan[]),
      ),
    );
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

function attr(span: OtlpSpan, key: string): unknown {
  const v = span.attributes.find((a) => a.key === key)?.value;
  return v ? Object.values(v)[0] : undefined;
}

describe('tracing on: spans arrive over OTLP/HTTP JSON with the right parent/child links (real process)', () => {
  const stub = new OtlpStub();
  let gw: GatewayProcess;
  let cleanup: () => Promise<void>;
  const admin = newApiKey();

  beforeAll(async () => {
    const endpoint = await stub.start();
    const isolated = await isolatedEnv('embedded', {
      PORT: String(await freePort()),
      ADMIN_BOOTSTRAP_KEY: admin,
      OTEL_EXPORTER_OTLP_ENDPOINT: endpoint,
      OTEL_BSP_SCHEDULE_DELAY: '100',
      LOG_LEVEL: 'info',
    });
    cleanup = isolated.cleanup;
    gw = spawnGateway(isolated.env);
    await gw.waitForOutput(/floodgate started/);
  });
  afterAll(async () => {
    await gw?.stop();
    await stub.close();
    await cleanup?.();
  });

  it('request span ← auth and rate-limit spans, continuing the caller’s traceparent', async () => {
    const traceId = randomBytes(16).toString('hex');
    const callerSpanId = randomBytes(8).toString('hex');
    const res = await getJson(`${gw.url}/api/me`, {
      headers: { ...bearer(admin), traceparent: `00-${traceId}-${callerSpanId}-01` },
    });
    expect(res.status).toBe(200);

    let spans: OtlpSpan[] = [];
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline) {
      spans = stub.spans().filter((s) => s.traceId === traceId);
      if (spans.some((s) => s.kind === 2)) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    expect(stub.posts.every((p) => p.path === '/v1/traces' && /json/.test(p.contentType ?? ''))).toBe(true);
    const server = spans.find((s) => s.kind === 2); // SERVER
    expect(server, JSON.stringify(spans)).toBeDefined();
    expect(server!.name).toBe('GET /api/me');
    expect(server!.parentSpanId).toBe(callerSpanId);
    expect(attr(server!, 'http.route')).toBe('/api/me');
    expect(Number(attr(server!, 'http.response.status_code'))).toBe(200);
    expect(attr(server!, 'floodgate.request_id')).toBe(res.headers.get('x-request-id'));

    const auth = spans.find((s) => s.name === 'auth');
    expect(auth, `span names: ${spans.map((s) => s.name).join(', ')}`).toBeDefined();
    expect(auth!.parentSpanId).toBe(server!.spanId);
    const rateLimit = spans.find((s) => s.name === 'rate_limit');
    expect(rateLimit).toBeDefined();
    expect(rateLimit!.parentSpanId).toBe(server!.spanId);
  });

  it('a request without traceparent starts a new trace; a 404 is traced with route "unmatched"', async () => {
    const res = await fetch(`${gw.url}/nowhere/${randomBytes(4).toString('hex')}`);
    expect(res.status).toBe(404);
    const requestId = res.headers.get('x-request-id');
    let span: OtlpSpan | undefined;
    const deadline = Date.now() + 5000;
    while (!span && Date.now() < deadline) {
      span = stub.spans().find((s) => s.kind === 2 && attr(s, 'floodgate.request_id') === requestId);
      if (!span) await new Promise((r) => setTimeout(r, 50));
    }
    expect(span).toBeDefined();
    expect(span!.parentSpanId ?? '').toBe('');
    expect(span!.name).toBe('GET unmatched');
  });
});

describe('tracing off', () => {
  it('nothing is exported and the tracing API is inert, even with other OTEL_* variables pointing at a receiver', async () => {
    const stub = new OtlpStub();
    const endpoint = await stub.start();
    // The OTLP exporter would read this from the process environment if it were ever built.
    process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = `${endpoint}/v1/traces`;
    const gw = await startGateway('embedded');
    try {
      expect(tracingEnabled()).toBe(false);
      for (let i = 0; i < 5; i++) expect((await fetch(`${gw.url}/health/live`)).status).toBe(200);
      await new Promise((r) => setTimeout(r, 400));
      expect(stub.posts).toHaveLength(0);
    } finally {
      delete process.env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT;
      await gw.close();
      await stub.close();
    }
  });
});
