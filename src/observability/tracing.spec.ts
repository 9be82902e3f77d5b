import { context, SpanKind, trace } from '@opentelemetry/api';
import { InMemorySpanExporter } from '@opentelemetry/sdk-trace-base';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  contextFromTraceparent,
  injectTraceContext,
  NOOP_SPAN,
  startSpan,
  startTracing,
  traceparentHeader,
  tracingEnabled,
  withSpan,
  type TracingHandle,
} from './tracing.js';

describe('tracing API with tracing off', () => {
  it('costs nothing: no span, no promise wrapping, no header', () => {
    expect(tracingEnabled()).toBe(false);
    expect(startSpan('x')).toBe(NOOP_SPAN);
    const value = { v: 1 };
    expect(withSpan('x', () => value)).toBe(value); // synchronous, the very same value
    const promise = Promise.resolve(2);
    expect(withSpan('x', () => promise)).toBe(promise); // not wrapped in another promise
    expect(traceparentHeader()).toBeUndefined();
    const headers: Record<string, string> = {};
    injectTraceContext(headers);
    expect(headers).toEqual({});
  });
});

describe('tracing API with tracing on', () => {
  const exporter = new InMemorySpanExporter();
  let handle: TracingHandle;
  beforeAll(() => {
    handle = startTracing({
      exporter,
      serviceVersion: '0.0.0-test',
      instanceId: 'unit',
      mode: 'embedded',
      scheduledDelayMillis: 10,
    });
  });
  afterAll(async () => {
    await handle.shutdown();
    expect(tracingEnabled()).toBe(false);
  });

  it('withSpan nests across awaits; traceparentHeader names the active span', async () => {
    let upstreamHeader: string | undefined;
    let admissionId = '';
    const result = await withSpan('request', async (root) => {
      await withSpan('admission', async (span) => {
        admissionId = span.spanContext().spanId;
        await new Promise((r) => setTimeout(r, 5));
      });
      await withSpan(
        'upstream',
        async (span) => {
          await new Promise((r) => setImmediate(r));
          upstreamHeader = traceparentHeader();
          expect(upstreamHeader).toBe(`00-${span.spanContext().traceId}-${span.spanContext().spanId}-01`);
        },
        { 'floodgate.provider': 'p' },
        SpanKind.CLIENT,
      );
      return root.spanContext().traceId;
    });
    await handle.forceFlush();
    const spans = exporter.getFinishedSpans();
    const byName = Object.fromEntries(spans.map((s) => [s.name, s]));
    expect(Object.keys(byName).sort()).toEqual(['admission', 'request', 'upstream']);
    const root = byName.request!;
    expect(root.spanContext().traceId).toBe(result);
    expect(byName.admission!.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    expect(byName.upstream!.parentSpanContext?.spanId).toBe(root.spanContext().spanId);
    expect(byName.admission!.spanContext().spanId).toBe(admissionId);
    expect(byName.upstream!.kind).toBe(SpanKind.CLIENT);
    expect(byName.upstream!.attributes['floodgate.provider']).toBe('p');
    expect(upstreamHeader).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
  });

  it('withSpan records a rejection on the span and rethrows it', async () => {
    exporter.reset();
    await expect(withSpan('failing', () => Promise.reject(new TypeError('boom')))).rejects.toThrow('boom');
    await handle.forceFlush();
    const [span] = exporter.getFinishedSpans();
    expect(span!.status.code).toBe(2); // ERROR
    expect(span!.events[0]!.attributes?.['exception.type']).toBe('TypeError');
  });

  it('startSpan with an explicit parent; injectTraceContext sets the header', async () => {
    exporter.reset();
    const parent = startSpan('queue_wait');
    const child = startSpan('grant', undefined, { parent });
    const headers: Record<string, string> = {};
    injectTraceContext(headers, child);
    expect(headers.traceparent).toBe(`00-${child.spanContext().traceId}-${child.spanContext().spanId}-01`);
    child.end();
    parent.end();
    await handle.forceFlush();
    const spans = exporter.getFinishedSpans();
    expect(spans.find((s) => s.name === 'grant')!.parentSpanContext?.spanId).toBe(
      parent.spanContext().spanId,
    );
  });

  it('an incoming traceparent becomes the remote parent; malformed ones are ignored', () => {
    const ctx = contextFromTraceparent('00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01');
    expect(trace.getSpanContext(ctx)).toMatchObject({
      traceId: '0af7651916cd43dd8448eb211c80319c',
      spanId: 'b7ad6b7169203331',
      isRemote: true,
    });
    for (const bad of [
      'garbage',
      '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01',
      undefined,
    ]) {
      expect(trace.getSpanContext(contextFromTraceparent(bad))).toBeUndefined();
    }
    expect(context.active()).toBeDefined();
  });
});
