import { ApplicationConfig } from '@nestjs/core';
import { PinoLogger } from 'nestjs-pino';
import type { Logger as Pino } from 'pino';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import { AuthGuard } from '../../src/auth/auth.guard.js';
import { HandlerContextGuard } from '../../src/observability/handler-context.guard.js';
import { startGateway, type TestGateway } from '../support/gateway.js';

/**
 * What the per-request path must not do again (issue 14 item 6, bench/RESULTS.md "Where the CPU
 * goes"): no global interceptor (Nest then runs an rxjs pipeline for every request), and no pino
 * child logger per request for the request-id logging context. The handler context is set by the
 * last global guard, so it still means "the handler was reached".
 */
describe('per-request hot path (real app, embedded)', () => {
  let gw: TestGateway;

  beforeAll(async () => {
    gw = await startGateway('embedded', { LOG_LEVEL: 'info' });
  });
  afterAll(async () => {
    await gw?.close();
  });

  it('registers no global interceptor; the handler-context guard runs last, after auth', () => {
    const config = gw.app.get(ApplicationConfig);
    expect(config.getGlobalInterceptors()).toEqual([]);
    const guards = config.getGlobalGuards();
    expect(guards[0]).toBeInstanceOf(AuthGuard);
    expect(guards.at(-1)).toBeInstanceOf(HandlerContextGuard);
    expect(guards.filter((g) => g instanceof HandlerContextGuard)).toHaveLength(1);
  });

  it('creates no pino child logger per request', async () => {
    const root = PinoLogger.root as unknown as Pino;
    const child = vi.spyOn(root, 'child');
    try {
      for (let i = 0; i < 5; i++) {
        const res = await fetch(`${gw.url}/health/live`);
        await res.arrayBuffer();
        expect(res.status).toBe(200);
      }
      const unauthorized = await fetch(`${gw.url}/v1/models`);
      await unauthorized.arrayBuffer();
      expect(unauthorized.status).toBe(401);
      expect(child).not.toHaveBeenCalled();
    } finally {
      child.mockRestore();
    }
  });
});
