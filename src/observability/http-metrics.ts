import type { FloodgateMetrics } from '../metrics/floodgate-metrics.js';

/** The route label of requests no route matched (404s, scanners): one series, never the raw path. */
export const UNMATCHED_ROUTE = 'unmatched';

const STATUS_CLASSES = ['1xx', '2xx', '3xx', '4xx', '5xx'] as const;
/** Methods get their own label value; anything else (PROPFIND, …) is "OTHER" so the label stays bounded. */
const KNOWN_METHODS = new Set(['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS']);

interface Inc {
  inc(value?: number): void;
}
interface Observe {
  observe(value: number): void;
}

/**
 * The label children of one (method, route): per status class, the counter and histogram children,
 * created on first use and kept, so recording a request allocates no label object.
 */
export class RouteSeries {
  private readonly counters: (Inc | undefined)[] = [undefined, undefined, undefined, undefined, undefined];
  private readonly histograms: (Observe | undefined)[] = [
    undefined,
    undefined,
    undefined,
    undefined,
    undefined,
  ];

  constructor(
    private readonly metrics: FloodgateMetrics,
    readonly method: string,
    readonly route: string,
  ) {}

  record(status: number, seconds: number): void {
    let idx = Math.floor(status / 100) - 1;
    if (idx < 0 || idx > 4) idx = 4;
    let counter = this.counters[idx];
    let histogram = this.histograms[idx];
    if (counter === undefined || histogram === undefined) {
      const cls = STATUS_CLASSES[idx]!;
      counter = this.metrics.hot.httpRequests.get3(this.method, this.route, cls);
      histogram = this.metrics.hot.httpDuration.get3(this.method, this.route, cls);
      this.counters[idx] = counter;
      this.histograms[idx] = histogram;
    }
    counter.inc();
    histogram.observe(seconds);
  }
}

/**
 * floodgate_http_requests_total / floodgate_http_request_duration_seconds, labelled with the ROUTE
 * TEMPLATE (`/api/admin/users/:id`) — never the raw path — so the series count is bounded by the
 * number of routes × methods × 5 status classes.
 */
export class HttpMetricsRecorder {
  private readonly byRoute = new Map<string, Map<string, RouteSeries>>();

  constructor(private readonly metrics: FloodgateMetrics) {}

  /** The series of one (method, route template); `route` undefined = no route matched. */
  series(method: string, route: string | undefined): RouteSeries {
    const r = route === undefined || route === '' ? UNMATCHED_ROUTE : route;
    let byMethod = this.byRoute.get(r);
    if (byMethod === undefined) {
      byMethod = new Map();
      this.byRoute.set(r, byMethod);
    }
    let series = byMethod.get(method);
    if (series === undefined) {
      series = new RouteSeries(this.metrics, KNOWN_METHODS.has(method) ? method : 'OTHER', r);
      byMethod.set(method, series);
    }
    return series;
  }

  record(method: string, route: string | undefined, status: number, seconds: number): void {
    this.series(method, route).record(status, seconds);
  }
}
