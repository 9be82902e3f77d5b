import { Module } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoggerModule } from 'nestjs-pino';
import type { DestinationStream } from 'pino';
import type { Options } from 'pino-http';
import PinoPretty from 'pino-pretty';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { REDACT_CENSOR, REDACT_PATHS } from './redact.js';
import { RequestLogContext, requestIdMixin } from './request-log-context.js';

type RawRequest = IncomingMessage & {
  id?: string;
  ip?: string;
  originalUrl?: string;
  principal?: { userId?: string };
};

export function pinoHttpOptions(config: AppConfig): Options {
  return {
    level: config.log.level,
    redact: { paths: REDACT_PATHS, censor: REDACT_CENSOR },
    // Fastify assigns the id (incoming X-Request-Id when sane); pino reuses it so logs and responses agree.
    genReqId: (req) => (req as RawRequest).id ?? '-',
    customAttributeKeys: { reqId: 'request_id' },
    // request_id on every line written while a request is served (RequestLogContext), when
    // LOG_REQUEST_CONTEXT=true.
    mixin: config.log.requestContext ? requestIdMixin : undefined,
    quietReqLogger: true,
    serializers: {
      req: (req: RawRequest) => ({
        method: req.method,
        // The query string is dropped: clients sometimes put credentials there.
        url: (req.originalUrl ?? req.url ?? '').split('?')[0],
        remote_address: req.ip,
      }),
      res: (res: ServerResponse) => ({ status_code: res.statusCode }),
    },
    customProps: (req) => {
      const principal = (req as RawRequest).principal;
      return principal?.userId ? { principal_id: principal.userId } : {};
    },
    // The one line per request is written by the Observability module (src/observability/
    // request-observer.ts) when the response is done: it also sees guard rejections and 404s, knows
    // the route template, and counts the request in the same place. pino-http's middleware is not
    // mounted at all (see RequestLogContext); these options configure the root logger.
    autoLogging: false,
  };
}

/**
 * LOG_FORMAT=pretty (development) formats in this thread and writes synchronously, rather than in a
 * pino transport's worker: lines then reach the terminal in the order they were logged, before the
 * banner main.ts writes (a worker's output trailed it by a variable amount).
 */
export function prettyStream(): DestinationStream {
  return PinoPretty({
    singleLine: true,
    translateTime: 'SYS:HH:MM:ss.l',
    ignore: 'pid,hostname',
    colorize: PinoPretty.isColorSupported,
    sync: true,
  });
}

/** nestjs-pino's pinoHttp parameter: JSON to stdout, or pretty lines written in order. */
export function pinoHttpParams(config: AppConfig): Options | [Options, DestinationStream] {
  const options = pinoHttpOptions(config);
  return config.log.format === 'pretty' ? [options, prettyStream()] : options;
}

@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        pinoHttp: pinoHttpParams(config),
        // No per-request middleware: RequestLogContext (+ the mixin above) binds request_id for logs
        // written inside a request, for a fraction of pino-http's per-request cost (issue 14,
        // bench/RESULTS.md "Where the CPU goes").
        forRoutes: [],
      }),
    }),
  ],
  providers: [RequestLogContext],
})
export class LoggingModule {}
