import { NestFactory } from '@nestjs/core';
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
