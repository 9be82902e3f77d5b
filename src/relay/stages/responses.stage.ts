import { Injectable } from '@nestjs/common';
import type { FastifyReply, FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import type { Principal } from '../../common/principal.js';
import type { KeyLease } from '../../key-pool/key-pool.types.js';
import { KeyPoolService } from '../../key-pool/services/key-pool.service.js';
import { refusalRejection } from '../domain/admission-rules.js';
import { gatewayTiming } from '../domain/gateway-headers.js';
import { clientResponseHeaders, upstreamRequestHeaders } from '../domain/headers.js';
import { parseUpstreamJson, upstreamClientError } from '../domain/outcome.js';
import { rejection, type Rejection } from '../domain/rejection.js';
import { usableId } from '../domain/responses-exchange.js';
import { failureOutcome, retryDecision } from '../domain/retry-table.js';
import { ownedBy, ResponseOwners } from '../infrastructure/response-owners.js';
import { UpstreamClient, classify, type UpstreamResponse } from '../infrastructure/upstream-client.js';
import { ClientGone } from './client-gone.js';
import { LeaseKeeper } from './lease-keeper.js';
import { reject } from './reject.js';
import type { Routed } from './route.stage.js';

/** 404 for an id this caller did not create through Floodgate (unknown, expired, or another tenant's: never told apart). */
export function responseNotFound(id: string, param: string | null = null): Rejection {
  return rejection(
    404,
    'invalid_request_error',
    'response_not_found',
    `No response with id '${id.slice(0, 256)}' was found`,
    { param },
  );
}

/**
 * The Responses API's stored responses (docs/relay.md "Responses API"): who created each one (the
 * provider and upstream key that hold it, the client key and user that own it) is remembered when
 * it is created; `GET|DELETE /v1/responses/{id}` and `previous_response_id` go back to that
 * provider — GET/DELETE with that very key (KeyPool's `onlyKeyId`), only for the owner.
 */
@Injectable()
export class ResponsesStage {
  constructor(
    private readonly owners: ResponseOwners,
    private readonly keyPool: KeyPoolService,
    private readonly leases: LeaseKeeper,
    private readonly upstream: UpstreamClient,
  ) {}

  /** Remembers a created response's owner (the answer's lease tells where it lives). Never waits. */
  created(id: string, lease: KeyLease, principal: Principal): void {
    this.owners.remember(id, {
      providerId: lease.providerId,
      keyId: lease.keyId,
      apiKeyId: principal.apiKeyId ?? null,
      userId: principal.userId,
    });
  }

  /**
   * A create request continuing a response (`previous_response_id`) goes to the provider that holds
   * it, whatever the model's routing would pick (a route alias: its targets on that provider, when it
   * has some). An id the caller did not create through Floodgate is a 404: upstream keys are shared
   * between tenants, so another tenant's response must not be continued (and read) through them.
   */
  async pin(routed: Routed, body: Record<string, unknown>, principal: Principal): Promise<Routed> {
    const previous = body.previous_response_id;
    // validation.ts refused anything but a non-empty string
    if (typeof previous !== 'string' || previous === '') return routed;
    const owner = usableId(previous) ? await this.owners.find(previous) : null;
    if (!owner || !ownedBy(owner, principal))
      throw reject(responseNotFound(previous, 'previous_response_id'));
    if (routed.route !== null) {
      const targets = routed.route.targets.filter((t) => t.provider.id === owner.providerId);
      if (targets.length === 0 || targets.length === routed.route.targets.length) return routed;
      return { ...routed, provider: targets[0]!.provider, route: { def: routed.route.def, targets } };
    }
    if (routed.provider.id === owner.providerId) return routed;
    const provider = (await this.keyPool.routableProviders()).find((p) => p.id === owner.providerId);
    return provider ? { ...routed, provider: { ...provider } } : routed;
  }

  /**
   * `GET|DELETE /v1/responses/{id}[/input_items]`: to the provider, with the upstream key, that
   * created the response; the provider's status and body relayed (its errors in the one error shape).
   */
  async forward(
    method: 'GET' | 'DELETE',
    id: string,
    suffix: '' | '/input_items',
    request: FastifyRequest,
    reply: FastifyReply,
  ): Promise<void> {
    const principal = request.principal!;
    // an id Floodgate would never have recorded is not looked up
    const owner = usableId(id) ? await this.owners.find(id) : null;
    if (!owner || !ownedBy(owner, principal)) throw reject(responseNotFound(id));
    const acquired = await this.keyPool.acquire(owner.providerId, { onlyKeyId: owner.keyId });
    if (!acquired.ok) throw reject(refusalRejection(acquired.refusal));
    const lease = acquired.lease;
    this.leases.hold(lease);
    const client = new ClientGone();
    const onClose = () => {
      if (!reply.raw.writableFinished) client.abort();
    };
    reply.raw.on('close', onClose);
    const requestId = String(request.id);
    const query = request.url.includes('?') ? request.url.slice(request.url.indexOf('?')) : '';
    const headers = upstreamRequestHeaders(request.headers, lease.apiKey, lease.headers, requestId);
    delete headers['content-type'];
    const startedAt = performance.now();
    let response: UpstreamResponse;
    let text: string;
    try {
      response = await this.upstream.send({
        baseUrl: lease.baseUrl,
        path: `/responses/${encodeURIComponent(id)}${suffix}${query}`,
        method,
        headers,
        signal: client,
        timeoutMs: lease.timeoutMs,
      });
      text = await response.body.text();
    } catch (err) {
      const failure = classify(err).kind;
      await this.leases.release(lease, { error: failureOutcome(failure) }).catch(() => undefined);
      const decision = retryDecision(
        { failure },
        {
          attempt: 1,
          maxAttempts: 1,
          clientGone: client.aborted,
          providerName: lease.providerName,
          timeoutMs: lease.timeoutMs,
        },
      );
      throw reject(decision.action === 'respond' ? responseNotFound(id) : decision.rejection);
    } finally {
      reply.raw.off('close', onClose);
    }
    const status = response.statusCode;
    const upstreamMs = performance.now() - startedAt;
    const outcome = {
      status,
      headers: response.headers,
      upstreamError: status >= 400 ? (parseUpstreamJson(text)?.error ?? null) : null,
    };
    void this.leases.release(lease, outcome).catch(() => undefined);
    const decision = retryDecision(
      { status, retryAfter: response.headers['retry-after'] },
      {
        attempt: 1,
        maxAttempts: 1,
        clientGone: false,
        providerName: lease.providerName,
        timeoutMs: lease.timeoutMs,
      },
    );
    if (decision.action !== 'respond') throw reject(decision.rejection);
    if (status >= 400) throw reject(upstreamClientError(status, parseUpstreamJson(text), lease.apiKey));
    // The owner record goes with the response it names.
    if (method === 'DELETE' && suffix === '') await this.owners.forget(id);
    const { headers: ours } = gatewayTiming(reply.elapsedTime, 0, upstreamMs, lease.keyId);
    const upstream = clientResponseHeaders(response.headers);
    for (const name in upstream) if (!reply.hasHeader(name)) void reply.header(name, upstream[name]);
    for (const name in ours) void reply.header(name, ours[name]);
    void reply.status(status).send(text);
  }
}
