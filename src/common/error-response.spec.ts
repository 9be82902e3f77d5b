import { describe, expect, it } from 'vitest';
import { ApiError } from './api-error.js';
import { errorBodyFor, isConnectivityError, toErrorResponse } from './error-response.js';

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

describe('errorBodyFor', () => {
  const body = toErrorResponse(
    ApiError.badRequest('max_tokens must be a positive integer', 'max_tokens'),
    'r',
  ).body;

  it('adds Anthropic’s top-level "type": "error" on /v1/messages (query string or not), nothing else changed', () => {
    expect(errorBodyFor('/v1/messages', body)).toEqual({ type: 'error', ...body });
    expect(errorBodyFor('/v1/messages?beta=true', body)).toEqual({ type: 'error', ...body });
    expect(JSON.stringify(errorBodyFor('/v1/messages', body))).toMatch(
      /^\{"type":"error","error":\{"type":"invalid_request_error"/,
    );
  });

  it('leaves every other path’s body as it is', () => {
    for (const url of ['/v1/chat/completions', '/v1/messages/batches', '/api/admin/providers', undefined])
      expect(errorBodyFor(url, body)).toBe(body);
  });
});
