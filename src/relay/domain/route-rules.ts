import { rejection, type Rejection } from './rejection.js';

/**
 * A route whose targets all point at providers that are disabled or deleted. 503, not 404: the
 * model name is valid (the route exists, and GET /v1/models lists it), so the SDK's NotFoundError
 * would send the user hunting for a typo; the service side can't serve it now — as with a provider
 * without usable keys (503 no_usable_upstream_keys), which an admin fixes, so not worth a quick retry.
 */
export const noRouteTarget = (alias: string): Rejection =>
  rejection(
    503,
    'service_unavailable_error',
    'no_route_target',
    `Route ${alias.slice(0, 256)} has no target on an enabled provider`,
    { retryAfterSeconds: 30, shouldRetry: false },
  );

/** Every target of the route was skipped because its circuit breaker is open. */
export const routeTargetsBroken = (alias: string): Rejection =>
  rejection(
    503,
    'service_unavailable_error',
    'route_targets_unavailable',
    `Every target of route ${alias.slice(0, 256)} is failing (circuit breaker open); retry later`,
    { retryAfterSeconds: 5, shouldRetry: true },
  );
