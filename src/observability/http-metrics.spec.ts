import { describe, expect, it, vi } from 'vitest';
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

  it('reuses the same series (and label children) for the same method and route', async () => {
    const http = new HttpMetricsRecorder(new FloodgateMetrics({ defaultMetrics: false }));
    const a = http.series('GET', '/health/live');
    expect(http.series('GET', '/health/live')).toBe(a);
    expect(http.series('POST', '/health/live')).not.toBe(a);
    // prom-client is called only to create the series; later samples update it in place.
    const metrics = new FloodgateMetrics({ defaultMetrics: false });
    const inc = vi.spyOn(metrics.httpRequests, 'inc');
    const labels = vi.spyOn(metrics.httpRequests, 'labels');
    const recorder = new HttpMetricsRecorder(metrics);
    for (let i = 0; i < 100; i++) recorder.record('GET', '/health/live', 200, 0.001);
    expect(labels).not.toHaveBeenCalled();
    expect(inc).toHaveBeenCalledTimes(1);
    const total = (await metrics.httpRequests.get()).values.find((v) => v.labels.route === '/health/live');
    expect(total?.value).toBe(100);
  });
});
