import { NestFactory } from '@nestjs/core';
import { randomUUID } from 'node:crypto';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Logger } from 'nestjs-pino';
import { requestIdFrom } from '../common/request-id.js';
import { trackInFlight } from './in-flight.js';
import type { AppConfig } from '../config/app-config.js';
import { AppModule } from './app.module.js';
import { setupSwagger } from './swagger.js';

/** Builds the whole application (used by main.ts and by the e2e tests, so both run the same thing). */
export async function createApp(config: AppConfig): Promise<NestFastifyApplication> {
  const adapter = new FastifyAdapter({
    logger: false,
    bodyLimit: config.http.bodyLimitBytes,
    genReqId: requestIdFrom,
    // Client IPs are derived from TRUSTED_PROXIES by the rate limiter, never from a blind trustProxy.
    trustProxy: false,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 512 },
    // Errors Node's HTTP parser raises before Fastify sees a request (headers too large, garbage)
    // still answer in the one error shape, with a request id.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      if (!socket.writable) return;
      const status =
        err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const requestId = randomUUID();
      const body = JSON.stringify({
        error: {
          type: 'invalid_request_error',
          code: status === 431 ? 'headers_too_large' : status === 408 ? 'request_timeout' : 'bad_request',
          message:
            status === 431
              ? 'Request headers are too large'
              : status === 408
                ? 'Request timed out'
                : 'Malformed HTTP request',
          param: null,
          request_id: requestId,
        },
      });
      const reason =
        status === 431
          ? 'Request Header Fields Too Large'
          : status === 408
            ? 'Request Timeout'
            : 'Bad Request';
      socket.end(
        `HTTP/1.1 ${status} ${reason}\r\nContent-Type: application/json; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\n` +
          `x-request-id: ${requestId}\r\nConnection: close\r\n\r\n${body}`,
      );
    },
  });
  const app = await NestFactory.create<NestFastifyApplication>(AppModule.forRoot(config), adapter, {
    bufferLogs: true,
    abortOnError: false,
    // JSON only: Nest's default parsers would also accept form-encoded bodies on every route.
    bodyParser: false,
  });
  app.useLogger(app.get(Logger));

  const fastify = app.getHttpAdapter().getInstance();
  trackInFlight(fastify);
  fastify.addHook('onRequest', (request, reply, done) => {
    void reply.header('x-request-id', request.id);
    done();
  });
  // Errors Fastify raises before a route runs (bad JSON, body too large) reach Nest's error handler,
  // and so the global AllExceptionsFilter: one shape everywhere.

  setupSwagger(app);
  await app.init();
  return app;
}
