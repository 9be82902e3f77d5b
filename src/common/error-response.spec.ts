import { describe, expect, it } from 'vitest';
import { ApiError } from './api-error.js';
import { isConnectivityError, toErrorResponse } from './error-response.js';

describe('toErrorResponse', () => {
  it('answers dependency outages 503 with Retry-After (pg and ioredis errors, wrapped or not)', () => {
    const outages: unknown[] = [
      Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:5432'), { code: 'ECONNREFUSED' }),
      { message: 'query failed', driverError: { code: '57P01', message: 'terminating connection' } },
      new Error("Stream isn't writeable and enableOfflineQueue options is false"),
      new Error('Command timed out'),
      new Error('Connection is closed.'),
      // Redis Cluster (REDIS_CLUSTER_NODES): the cluster client not ready, a slot without its master
      new Error("Cluster isn't ready and enableOfflineQueue options is false"),
      new Error('CLUSTERDOWN The cluster is down'),
      new Error('x', { cause: Object.assign(new Error('y'), { code: '08006' }) }),
    ];
    for (const err of outages) {
      expect(isConnectivityError(err)).toBe(true);
      const r = toErrorResponse(err, 'req-1');
      expect(r).toMatchObject({ status: 503, unexpected: false, headers: { 'retry-after': '2' } });
      expect(r.body.error).toMatchObject({
        type: 'service_unavailable_error',
        code: 'dependency_unavailable',
        request_id: 'req-1',
      });
      expect(r.body.error.message).not.toMatch(/ECONNREFUSED|5432|Stream/);
    }
  });

  it('keeps bugs visible as 500 and ApiErrors as they are', () => {
    const bug = toErrorResponse(new TypeError("Cannot read properties of undefined (reading 'id')"), 'r');
    expect(bug).toMatchObject({ status: 500, unexpected: true });
    expect(bug.body.error.message).toBe('Internal server error');
    expect(toErrorResponse(ApiError.notFound('nope'), 'r').status).toBe(404);
  });
});
