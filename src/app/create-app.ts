import { Logger as NestLogger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import type { FastifyError, FastifyReply, FastifyRequest } from 'fastify';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { FastifyAdapter, type NestFastifyApplication } from '@nestjs/platform-fastify';
import { Logger } from 'nestjs-pino';
import { sendError } from '../common/all-exceptions.filter.js';
import { ApiError } from '../common/api-error.js';
import { MAX_JSON_DEPTH, tooDeepAt } from '../common/input-safety.js';
import { requestIdFrom } from '../common/request-id.js';
import { markServerAnswer } from '../common/server-answer.js';
import { QuietFrameworkLogger } from '../logging/quiet-framework-logger.js';
import { HandlerContextGuard } from '../observability/observability.module.js';
import { trackInFlight } from './in-flight.js';
import type { AppConfig } from '../config/app-config.js';
import { AppModule } from './app.module.js';
import { setupSwagger } from './swagger.js';

declare module 'fastify' {
  interface FastifyRequest {
    /** A JSON body's text as received (set by the JSON parser below). */
    rawJson?: string;
  }
}

/** Builds the whole application (used by main.ts and by the e2e tests, so both run the same thing). */
export async function createApp(config: AppConfig): Promise<NestFastifyApplication> {
  const errorLogger = new NestLogger('Errors');
  const readTimeoutMs = config.http.bodyReadTimeoutMs;
  const adapter = new FastifyAdapter({
    logger: false,
    bodyLimit: config.http.bodyLimitBytes,
    genReqId: requestIdFrom,
    // Client IPs are derived from TRUSTED_PROXIES by the rate limiter, never from a blind trustProxy.
    trustProxy: false,
    return503OnClosing: true,
    routerOptions: { maxParamLength: 512 },
    // A request (headers and body) not fully received within BODY_READ_TIMEOUT_MS — a body short of
    // its Content-Length, a byte every few seconds — is cut by Node's HTTP server, which hands the
    // socket to clientErrorHandler below (408 in the one error shape, then closed). Node checks
    // every connectionsCheckingInterval, so the cut comes within 1.25 × the timeout.
    requestTimeout: readTimeoutMs,
    http: {
      requestTimeout: readTimeoutMs,
      headersTimeout: Math.min(60_000, readTimeoutMs),
      connectionsCheckingInterval: Math.max(100, Math.min(30_000, Math.floor(readTimeoutMs / 4))),
    },
    // URLs the router refuses before any route runs (malformed percent-encoding, a path parameter
    // over maxParamLength) answer in the one error shape with a request id, never echoing the URL.
    frameworkErrors: (error: FastifyError, request: FastifyRequest, reply: FastifyReply) => {
      void reply.header('x-request-id', request.id);
      sendError(reply, request, error, errorLogger);
    },
    // Errors Node's HTTP parser raises before Fastify sees a request (headers too large, garbage,
    // a request not received in time) still answer in the one error shape, with a request id.
    clientErrorHandler: (err: NodeJS.ErrnoException, socket) => {
      // The response Node attached to the socket when the request's headers arrived (if they did).
      const pending = (socket as { _httpMessage?: ServerResponse })._httpMessage;
      if (!socket.writable || pending?.headersSent) {
        socket.destroy();
        return;
      }
      const status =
        err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      const requestId = requestIdFrom((pending?.req ?? { headers: {} }) as IncomingMessage);
      if (pending && status === 408) {
        markServerAnswer(pending, { status, type: 'invalid_request_error', code: 'request_timeout' });
      }
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
  // Nest's own start-up lines (modules, routes) at debug level: the default output stays short.
  app.useLogger(new QuietFrameworkLogger(app.get(Logger)));

  const fastify = app.getHttpAdapter().getInstance();
  // Also sets x-request-id on every response (in the same onRequest hook).
  trackInFlight(fastify);
  // JSON bodies: Fastify's own parser (size limit, prototype poisoning refused), then a depth limit
  // for every route, before anything recursive walks the body (src/common/input-safety.ts).
  const parseJson = fastify.getDefaultJsonParser('error', 'error');
  // Declared up front: every request object keeps one shape whether or not it had a JSON body.
  fastify.decorateRequest('rawJson', undefined);
  fastify.removeContentTypeParser('application/json');
  fastify.addContentTypeParser('application/json', { parseAs: 'string' }, (request, body, done) => {
    if (body === '') {
      // Many clients label every request JSON. A DELETE (or GET) with no body is no body; a POST,
      // PUT or PATCH without one gets the one error shape, not Fastify's message.
      if (request.method === 'DELETE' || request.method === 'GET' || request.method === 'OPTIONS')
        return done(null, undefined);
      return done(
        ApiError.badRequest('Request body is empty: send a JSON object', null, 'invalid_json'),
        undefined,
      );
    }
    void parseJson(request, body as string, (err, value) => {
      if (err) return done(err, undefined);
      const at = tooDeepAt(value);
      if (at !== null) {
        return done(
          ApiError.badRequest(
            `Request body is nested more than ${MAX_JSON_DEPTH} levels deep`,
            at || null,
            'json_too_deep',
          ),
          undefined,
        );
      }
      // Kept for the relay, which sends a body it doesn't change upstream as it came.
      const text = body as string;
      request.rawJson = text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
      done(null, value);
    });
  });
  // Errors Fastify raises before a route runs (bad JSON, body too large) reach Nest's error handler,
  // and so the global AllExceptionsFilter: one shape everywhere.

  // The handler-context guard goes after every APP_GUARD (registered while the app was created):
  // it marks a request as having reached its handler, so it must run last.
  app.useGlobalGuards(app.get(HandlerContextGuard));

  setupSwagger(app);
  await app.init();
  return app;
}
