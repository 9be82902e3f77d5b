import { Module, RequestMethod } from '@nestjs/common';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { LoggerModule } from 'nestjs-pino';
import type { Options } from 'pino-http';
import type { AppConfig } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { REDACT_CENSOR, REDACT_PATHS } from './redact.js';

type RawRequest = IncomingMessage & {
  id?: string;
  ip?: string;
  originalUrl?: string;
  principal?: { userId?: string };
};

export function pinoHttpOptions(config: AppConfig): Options {
  return {
    level: config.log.level,
    transport:
      config.log.format === 'pretty'
        ? {
            target: 'pino-pretty',
            options: {
              singleLine: true,
              translateTime: 'SYS:HH:MM:ss.l',
              ignore: 'pid,hostname',
              colorize: true,
            },
          }
        : undefined,
    redact: { paths: REDACT_PATHS, censor: REDACT_CENSOR },
    // Fastify assigns the id (incoming X-Request-Id when sane); pino reuses it so logs and responses agree.
    genReqId: (req) => (req as RawRequest).id ?? '-',
    customAttributeKeys: { reqId: 'request_id' },
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
    // the route template, and counts the request in the same place. pino-http only provides
    // `req.log` (request_id bound) for logs written inside a request.
    autoLogging: false,
  };
}

@Module({
  imports: [
    LoggerModule.forRootAsync({
      inject: [APP_CONFIG],
      useFactory: (config: AppConfig) => ({
        pinoHttp: pinoHttpOptions(config),
        // On Fastify nestjs-pino's default route pattern matches nothing; this one matches every route.
        forRoutes: [{ path: '{*splat}', method: RequestMethod.ALL }],
      }),
    }),
  ],
})
export class LoggingModule {}
