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

const QUIET_PATHS = /^\/(health|metrics)(\/|$|\?)/;

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
        url: req.originalUrl ?? req.url,
        remote_address: req.ip,
      }),
      res: (res: ServerResponse) => ({ status_code: res.statusCode }),
    },
    customProps: (req) => {
      const principal = (req as RawRequest).principal;
      return principal?.userId ? { principal_id: principal.userId } : {};
    },
    autoLogging: { ignore: (req) => QUIET_PATHS.test(req.url ?? '') },
    // pino-http invents an Error with a stack for every 5xx; the exception filter already logs real ones.
    customErrorObject: (_req, _res, _err, value: Record<string, unknown>) => {
      const { err: _ignored, ...rest } = value;
      return rest;
    },
    customLogLevel: (_req, res, err) =>
      err || res.statusCode >= 500 ? 'error' : res.statusCode >= 400 ? 'warn' : 'info',
    customSuccessMessage: (req, res, responseTime) =>
      `${req.method} ${(req as RawRequest).originalUrl ?? req.url} ${res.statusCode} ${Math.round(responseTime)}ms`,
    customErrorMessage: (req, res) =>
      `${req.method} ${(req as RawRequest).originalUrl ?? req.url} ${res.statusCode} failed`,
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
