import { describe, expect, it } from 'vitest';
import { FloodgateMetrics } from '../metrics/floodgate-metrics.js';
import { HttpMetricsRecorder, UNMATCHED_ROUTE } from './http-metrics.js';

describe('HttpMetricsRecorder', () => {
  it('labels by method, route template and status class; unknown routes are "unmatched"', async () => {
    const metrics = new FloodgateMetrics({ defaultMetrics: false });
    const http = new HttpMetricsRecorder(metrics);
    http.record('GET', '/api/admin/users/:id', 200, 0.01);
    http.record('GET', '/api/admin/users/:id', 204, 0.02);
    http.record('GET', '/api/admin/users/:id', 404, 0.001);
    http.record('GET', undefined, 404, 0.001);
    http.record('PROPFIND', undefined, 405, 0.001);
    http.record('GET', '/x', 999, 0.001);
    const values = (await metrics.httpRequests.get()).values.map((v) => ({ ...v.labels, value: v.value }));
    expect(values).toEqual(
      expect.arrayContaining([
        { method: 'GET', route: '/api/admin/users/:id', status_class: '2xx', value: 2 },
        { method: 'GET', route: '/api/admin/users/:id', status_class: '4xx', value: 1 },
        { method: 'GET', route: UNMATCHED_ROUTE, status_class: '4xx', value: 1 },
        { method: 'OTHER', route: UNMATCHED_ROUTE, status_class: '4xx', value: 1 },
        { method: 'GET', route: '/x', status_class: '5xx', value: 1 },
      ]),
    );
    const hist = await metrics.httpDuration.get();
    const count = hist.values.find(
      (v) =>
        v.metricName === 'floodgate_http_request_duration_seconds_count' && v.labels.status_class === '2xx',
    );
    expect(count?.value).toBe(2);
  });

  it('reuses the same series (and label children) for the same method and route', () => {
    const http = new HttpMetricsRecorder(new FloodgateMetrics({ defaultMetrics: false }));
    const a = http.series('GET', '/health/live');
    expect(http.series('GET', '/health/live')).toBe(a);
    expect(http.series('POST', '/health/live')).not.toBe(a);
    const calls = { labels: 0 };
    const metrics = new FloodgateMetrics({ defaultMetrics: false });
    const original = metrics.httpRequests.labels.bind(metrics.httpRequests);
    metrics.httpRequests.labels = ((...args: string[]) => {
      calls.labels += 1;
      return original(...args);
    }) as typeof metrics.httpRequests.labels;
    const recorder = new HttpMetricsRecorder(metrics);
    for (let i = 0; i < 100; i++) recorder.record('GET', '/health/live', 200, 0.001);
    expect(calls.labels).toBe(1);
  });
});
