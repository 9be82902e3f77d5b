import type { HttpAdapterHost } from '@nestjs/core';
import Fastify from 'fastify';
import { PinoLogger } from 'nestjs-pino';
import { Writable } from 'node:stream';
import { afterAll, describe, expect, it } from 'vitest';
import type { AppConfig } from '../config/app-config.js';
import { RequestLogContext, requestIdMixin } from './request-log-context.js';

/**
 * Logs written while a request is served carry its request_id — after the body was parsed and
 * across awaits — without pino-http's middleware; logs outside a request carry none.
 */
describe('RequestLogContext (LOG_REQUEST_CONTEXT=true)', () => {
  const lines: Record<string, unknown>[] = [];
  const out = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const l of chunk.toString().split('\n'))
        if (l.trim()) lines.push(JSON.parse(l) as Record<string, unknown>);
      done();
    },
  });
  const params = { pinoHttp: [{ level: 'info', mixin: requestIdMixin }, out] as [object, Writable] };
  const logger = new PinoLogger(params as never);
  const app = Fastify({ genReqId: () => `req-${lines.length}-${Math.random().toString(36).slice(2)}` });
  new RequestLogContext(
    { httpAdapter: { getInstance: () => app } } as unknown as HttpAdapterHost,
    { log: { requestContext: true } } as AppConfig,
  ).onModuleInit();
  app.post('/x', async (request) => {
    await new Promise((r) => setTimeout(r, 5));
    logger.info({ marker: (request.body as { marker: string }).marker }, 'inside');
    // a line that names a request id itself keeps it, once
    logger.info({ marker: `${(request.body as { marker: string }).marker}-own`, request_id: 'own' }, 'own');
    return { id: request.id };
  });
  afterAll(() => app.close());

  it('binds request_id to logs written inside the request, and to nothing else', async () => {
    const ids: string[] = [];
    for (const marker of ['a', 'b']) {
      const r = await app.inject({
        method: 'POST',
        url: '/x',
        payload: { marker, pad: 'x'.repeat(100_000) },
      });
      ids.push((r.json() as { id: string }).id);
    }
    logger.info({ marker: 'outside' }, 'outside');
    await new Promise((r) => setTimeout(r, 20));
    const byMarker = (m: string) => lines.find((l) => l.marker === m);
    expect(byMarker('a')).toMatchObject({ request_id: ids[0], msg: 'inside' });
    expect(byMarker('b')).toMatchObject({ request_id: ids[1], msg: 'inside' });
    expect(byMarker('outside')?.request_id).toBeUndefined();
    expect(byMarker('a-own')?.request_id).toBe('own');
  });
});

/**
 * Off (the default): no onRequest hook, so no AsyncLocalStorage is ever run and Node installs no
 * promise hooks for it (6–16 % of the relay's CPU on Node 20).
 */
describe('RequestLogContext (LOG_REQUEST_CONTEXT unset)', () => {
  it('installs no hook', () => {
    const hooks: string[] = [];
    const fastify = { addHook: (name: string) => hooks.push(name) };
    new RequestLogContext(
      { httpAdapter: { getInstance: () => fastify } } as unknown as HttpAdapterHost,
      { log: { requestContext: false } } as AppConfig,
    ).onModuleInit();
    expect(hooks).toEqual([]);
  });
});
