import type { FastifyInstance } from 'fastify';

/**
 * Requests in flight on this server, for the shutdown drain: Node's closeIdleConnections() never
 * closes a keep-alive connection that has not sent a request yet, so once nothing is in flight the
 * drain closes every connection itself instead of waiting for SHUTDOWN_TIMEOUT_MS.
 */
export class InFlightRequests {
  count = 0;
  /** Requests started since the server began (the idle collector's "has anything happened"). */
  started = 0;
}

const trackers = new WeakMap<object, InFlightRequests>();

export function trackInFlight(fastify: FastifyInstance): InFlightRequests {
  const tracker = new InFlightRequests();
  // 'close' fires once per response whether it completed or the client went away; one listener
  // function for every response (no closure or once-wrapper per request).
  const closed = () => {
    tracker.count--;
  };
  fastify.addHook('onRequest', (_request, reply, done) => {
    tracker.count++;
    tracker.started++;
    reply.raw.on('close', closed);
    done();
  });
  trackers.set(fastify.server, tracker);
  return tracker;
}

export function inFlightOf(server: object): InFlightRequests | undefined {
  return trackers.get(server);
}
