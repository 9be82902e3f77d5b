import { AsyncLocalStorage } from 'node:async_hooks';
import {
  context,
  INVALID_SPAN_CONTEXT,
  ROOT_CONTEXT,
  SpanKind,
  SpanStatusCode,
  trace,
  TraceFlags,
  type Attributes,
  type Context,
  type ContextManager,
  type Span,
  type Tracer,
} from '@opentelemetry/api';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';

/**
 * Tracing for Floodgate: OpenTelemetry spans exported over OTLP/HTTP (JSON) when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set, nothing at all otherwise.
 *
 * The API below is what the rest of the gateway calls (the relay around admission, queue wait and
 * the upstream call). With tracing off every function is a branch on one module-level variable and
 * returns at once: no span object, no context, no closure is created.
 *
 *   await withSpan('upstream', (span) => fetchUpstream(...), { 'floodgate.provider': name });
 *   const span = startSpan('queue_wait');  ...  span.end();
 *   headers.traceparent = traceparentHeader();   // undefined when off: leave the header out
 *   injectTraceContext(headers);                 // same, in place
 *
 * The ObservabilityModule opens the SERVER span of every request (Fastify hooks) and makes it the
 * active span for guards, interceptors and the handler, so spans started there are its children.
 * It also registers this module's context manager and tracer provider as the @opentelemetry/api
 * globals, so code that only depends on @opentelemetry/api (`trace.getTracer('floodgate')`) joins
 * the same traces.
 */

let tracer: Tracer | null = null;

/** A shared, non-recording span handed out when tracing is off (never allocated per call). */
export const NOOP_SPAN: Span = trace.wrapSpanContext(INVALID_SPAN_CONTEXT);

/** true when spans are recorded and exported. */
export function tracingEnabled(): boolean {
  return tracer !== null;
}

export interface StartSpanOptions {
  kind?: SpanKind;
  /** Parent: a span or a context. Default: the active span. */
  parent?: Span | Context;
  /** Start time (ms since epoch or a performance.now()-based hrtime); default now. */
  startTime?: number;
}

/**
 * Starts a span (child of the active span unless `parent` says otherwise). The caller ends it.
 * Use for spans whose start and end live in different callbacks (queue wait, admission).
 */
export function startSpan(name: string, attributes?: Attributes, options?: StartSpanOptions): Span {
  if (tracer === null) return NOOP_SPAN;
  let parentContext: Context;
  const parent = options?.parent;
  if (parent === undefined) parentContext = context.active();
  else if (isSpan(parent)) parentContext = trace.setSpan(context.active(), parent);
  else parentContext = parent;
  return tracer.startSpan(
    name,
    { kind: options?.kind ?? SpanKind.INTERNAL, attributes, startTime: options?.startTime },
    parentContext,
  );
}

/**
 * Runs `fn` inside a new child span of the active span and ends the span when `fn` settles (an
 * exception or rejection is recorded on the span and rethrown). Spans started inside `fn`, and
 * `traceparentHeader()` called inside it, see this span as the parent.
 */
export function withSpan<T>(
  name: string,
  fn: (span: Span) => Promise<T> | T,
  attributes?: Attributes,
  kind: SpanKind = SpanKind.INTERNAL,
): Promise<T> | T {
  if (tracer === null) return fn(NOOP_SPAN);
  const parentContext = context.active();
  const span = tracer.startSpan(name, { kind, attributes }, parentContext);
  return context.with(trace.setSpan(parentContext, span), () => settle(span, fn));
}

/** Runs `fn` with `span` as the active span (e.g. the request span around the handler). */
export function runWithSpan<T>(span: Span, fn: () => T): T {
  if (tracer === null || span === NOOP_SPAN) return fn();
  return context.with(trace.setSpan(context.active(), span), fn);
}

/** Marks a span failed with the error's class and message (never a stack: messages are safe, stacks may not be). */
export function recordSpanError(span: Span, err: unknown): void {
  if (span === NOOP_SPAN) return;
  const name = err instanceof Error ? err.constructor.name || err.name : typeof err;
  const message = err instanceof Error ? err.message : String(err);
  span.recordException({ name, message });
  span.setStatus({ code: SpanStatusCode.ERROR, message });
}

/**
 * The W3C `traceparent` header value for the active span (or `span`), to send upstream; undefined
 * when tracing is off or no span is active.
 */
export function traceparentHeader(span?: Span): string | undefined {
  if (tracer === null) return undefined;
  const sc = (span ?? trace.getSpan(context.active()))?.spanContext();
  if (!sc || !trace.isSpanContextValid(sc)) return undefined;
  return `00-${sc.traceId}-${sc.spanId}-${sc.traceFlags & TraceFlags.SAMPLED ? '01' : '00'}`;
}

/** Sets `traceparent` (and `tracestate` when there is one) on outgoing headers; no-op when off. */
export function injectTraceContext(headers: Record<string, string>, span?: Span): void {
  if (tracer === null) return;
  const value = traceparentHeader(span);
  if (value === undefined) return;
  headers.traceparent = value;
  const state = (span ?? trace.getSpan(context.active()))?.spanContext().traceState?.serialize();
  if (state) headers.tracestate = state;
}

const TRACEPARENT = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** The context of an incoming `traceparent` header (a remote parent), or ROOT when absent or malformed. */
export function contextFromTraceparent(header: string | string[] | undefined): Context {
  const value = Array.isArray(header) ? header[0] : header;
  if (!value) return ROOT_CONTEXT;
  const m = TRACEPARENT.exec(value.trim().toLowerCase());
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return ROOT_CONTEXT;
  const spanContext = { traceId: m[2]!, spanId: m[3]!, traceFlags: parseInt(m[4]!, 16) & 1, isRemote: true };
  if (!trace.isSpanContextValid(spanContext)) return ROOT_CONTEXT;
  return trace.setSpanContext(ROOT_CONTEXT, spanContext);
}

/** Starts the SERVER span of an incoming request (used by the Fastify hooks). */
export function startRequestSpan(
  method: string,
  traceparent: string | string[] | undefined,
  attributes: Attributes,
): Span {
  if (tracer === null) return NOOP_SPAN;
  return tracer.startSpan(
    `${method}`,
    { kind: SpanKind.SERVER, attributes },
    contextFromTraceparent(traceparent),
  );
}

function isSpan(value: Span | Context): value is Span {
  return typeof (value as Span).spanContext === 'function';
}

function settle<T>(span: Span, fn: (span: Span) => Promise<T> | T): Promise<T> | T {
  let result: Promise<T> | T;
  try {
    result = fn(span);
  } catch (err) {
    recordSpanError(span, err);
    span.end();
    throw err;
  }
  if (result !== null && typeof result === 'object' && typeof (result as Promise<T>).then === 'function') {
    return (result as Promise<T>).then(
      (value) => {
        span.end();
        return value;
      },
      (err: unknown) => {
        recordSpanError(span, err);
        span.end();
        throw err;
      },
    );
  }
  span.end();
  return result;
}

/** OpenTelemetry's context manager over AsyncLocalStorage (the official one lives in a package we don't ship). */
export class AsyncLocalContextManager implements ContextManager {
  private readonly storage = new AsyncLocalStorage<Context>();

  active(): Context {
    return this.storage.getStore() ?? ROOT_CONTEXT;
  }

  with<A extends unknown[], F extends (...args: A) => ReturnType<F>>(
    ctx: Context,
    fn: F,
    thisArg?: ThisParameterType<F>,
    ...args: A
  ): ReturnType<F> {
    return this.storage.run(ctx, () => fn.apply(thisArg, args));
  }

  bind<T>(ctx: Context, target: T): T {
    if (typeof target !== 'function') return target;
    const fn = target as unknown as (...args: unknown[]) => unknown;
    // eslint-disable-next-line @typescript-eslint/no-this-alias
    const manager = this;
    return function bound(this: unknown, ...args: unknown[]) {
      return manager.with(ctx, () => fn.apply(this, args));
    } as unknown as T;
  }

  enable(): this {
    return this;
  }

  disable(): this {
    this.storage.disable();
    return this;
  }
}

export interface TracingOptions {
  /** OTEL_EXPORTER_OTLP_ENDPOINT: the collector's base URL; spans go to `<endpoint>/v1/traces`. */
  endpoint?: string;
  /** Instead of OTLP (tests): any span exporter. */
  exporter?: SpanExporter;
  serviceVersion: string;
  instanceId: string;
  mode: string;
  /** Batch export delay; default OTEL_BSP_SCHEDULE_DELAY or 1000 ms. */
  scheduledDelayMillis?: number;
}

export interface TracingHandle {
  /** Exports what is buffered now. */
  forceFlush(): Promise<void>;
  /** Exports what is buffered, then turns tracing off (the API becomes no-ops again). */
  shutdown(): Promise<void>;
  /** Whether this process's @opentelemetry/api globals point at our provider. */
  readonly registeredGlobally: boolean;
}

/** Joins a base endpoint and the traces path as the OTLP spec says (base URL + `v1/traces`). */
export function otlpTracesUrl(endpoint: string): string {
  return `${endpoint.replace(/\/+$/, '')}/v1/traces`;
}

/**
 * Turns tracing on for this process. Called once by the ObservabilityModule at start when
 * OTEL_EXPORTER_OTLP_ENDPOINT is set. A second call while on returns a handle that does nothing
 * (one provider per process: several apps in one test process share it).
 */
export function startTracing(options: TracingOptions): TracingHandle {
  if (tracer !== null) {
    return {
      forceFlush: () => Promise.resolve(),
      shutdown: () => Promise.resolve(),
      registeredGlobally: false,
    };
  }
  const exporter =
    options.exporter ??
    new OTLPTraceExporter({
      url: otlpTracesUrl(options.endpoint ?? 'http://127.0.0.1:4318'),
      timeoutMillis: 5000,
    });
  const envDelay = Number(process.env.OTEL_BSP_SCHEDULE_DELAY);
  const provider = new BasicTracerProvider({
    resource: resourceFromAttributes({
      'service.name': process.env.OTEL_SERVICE_NAME ?? 'floodgate',
      'service.version': options.serviceVersion,
      'service.instance.id': options.instanceId,
      'floodgate.mode': options.mode,
    }),
    spanProcessors: [
      new BatchSpanProcessor(exporter, {
        scheduledDelayMillis:
          options.scheduledDelayMillis ?? (Number.isFinite(envDelay) && envDelay > 0 ? envDelay : 1000),
      }),
    ],
  });
  const contextManager = new AsyncLocalContextManager();
  const registeredContext = context.setGlobalContextManager(contextManager);
  const registeredProvider = trace.setGlobalTracerProvider(provider);
  tracer = provider.getTracer('floodgate', options.serviceVersion);
  let stopped = false;
  return {
    registeredGlobally: registeredContext && registeredProvider,
    forceFlush: () => provider.forceFlush(),
    shutdown: async () => {
      if (stopped) return;
      stopped = true;
      tracer = null;
      try {
        await provider.shutdown();
      } finally {
        if (registeredProvider) trace.disable();
        if (registeredContext) context.disable();
      }
    },
  };
}
