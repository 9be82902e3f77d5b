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

/**
 * Counts a Fastify instance's requests in flight, and sets every response's x-request-id: both in
 * one onRequest hook (one hook step per request, not two).
 */
export function trackInFlight(fastify: FastifyInstance): InFlightRequests {
  const tracker = new InFlightRequests();
  // 'close' fires once per response whether it completed or the client went away; one listener
  // function for every response (no closure or once-wrapper per request).
  const closed = () => {
    tracker.count--;
  };
  fastify.addHook('onRequest', (request, reply, done) => {
    tracker.count++;
    tracker.started++;
    reply.raw.on('close', closed);
    // Every answer carries the request id, also one a later hook or the router ends (404, 503).
    void reply.header('x-request-id', request.id);
    done();
  });
  trackers.set(fastify.server, tracker);
  return tracker;
}

export function inFlightOf(server: object): InFlightRequests | undefined {
  return trackers.get(server);
}
