import type { LoggerService } from '@nestjs/common';
import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { ReadinessState } from '../health/readiness.state.js';
import { inFlightOf } from './in-flight.js';

/**
 * SIGTERM/SIGINT: readiness turns 503, the listener stops taking connections, in-flight requests
 * finish (up to SHUTDOWN_TIMEOUT_MS), then modules close their pools and the process exits 0.
 * Nest's own close() would run module destroy hooks *before* closing the HTTP server, dropping
 * database connections under requests still running, so the server is closed first here.
 */
export function installGracefulShutdown(
  app: NestFastifyApplication,
  timeoutMs: number,
  logger: LoggerService,
): void {
  let stopping = false;
  const stop = async (signal: string): Promise<void> => {
    if (stopping) return;
    stopping = true;
    const started = Date.now();
    app.get(ReadinessState).beginDraining();
    logger.log(`${signal} received: draining in-flight requests (up to ${timeoutMs} ms)`, 'Shutdown');
    const force = setTimeout(() => {
      logger.warn(
        `drain did not finish within ${timeoutMs} ms: exiting with requests still in flight`,
        'Shutdown',
      );
      process.exit(1);
    }, timeoutMs);
    force.unref();
    // Node closes idle keep-alive sockets once, when close() is called; sockets that finish their
    // request later would otherwise keep the server open until the client's keep-alive ends.
    const server = app.getHttpServer();
    const inFlight = inFlightOf(server);
    const reaper = setInterval(() => {
      // Connections that never sent a request are not "idle" to Node: once nothing is in flight,
      // close them all rather than waiting for SHUTDOWN_TIMEOUT_MS.
      if (inFlight && inFlight.count <= 0) server.closeAllConnections();
      else server.closeIdleConnections();
    }, 100);
    reaper.unref();
    try {
      // Fastify: stop listening, close idle keep-alive sockets, answer 503 on busy ones, wait for in-flight.
      await app.getHttpAdapter().getInstance().close();
      clearInterval(reaper);
      await app.close();
      logger.log(`shutdown complete in ${Date.now() - started} ms`, 'Shutdown');
      process.exit(0);
    } catch (err) {
      logger.error(`shutdown failed: ${err instanceof Error ? err.message : String(err)}`, 'Shutdown');
      process.exit(1);
    }
  };
  process.once('SIGTERM', () => void stop('SIGTERM'));
  process.once('SIGINT', () => void stop('SIGINT'));
}
