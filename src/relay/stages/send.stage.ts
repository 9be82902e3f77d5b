import { Injectable } from '@nestjs/common';
import type { FastifyRequest } from 'fastify';
import { performance } from 'node:perf_hooks';
import type { Priority } from '../../common/principal.js';
import type { KeyLease, KeyOutcome } from '../../key-pool/key-pool.types.js';
import type { Span } from '@opentelemetry/api';
import { injectTraceContext, tracingEnabled, withSpan } from '../../observability/tracing.js';
import { upstreamRequestHeaders } from '../domain/headers.js';
import { parseUpstreamJson } from '../domain/outcome.js';
import { failureOutcome, retryDecision, type Observed } from '../domain/retry-table.js';
import { UPSTREAM_PATHS, type Endpoint } from '../domain/validation.js';
import {
  UpstreamClient,
  UpstreamError,
  classify,
  type UpstreamBody,
  type UpstreamResponse,
} from '../infrastructure/upstream-client.js';
import { AdmitStage } from './admit.stage.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { ClientGone } from './client-gone.js';
import { reject } from './reject.js';
import type { RoutableProvider } from './route.stage.js';

/** One request to the upstream with a held lease: its response (headers in, body unread) or its failure. */
export interface Attempt {
  lease: KeyLease;
  response?: UpstreamResponse;
  error?: UpstreamError;
  startedAt: number;
}

/** What sending did: how many attempts, with which key, how long upstream took — and the answer to give, or the error. */
export interface Delivery {
  attempts: number;
  keyId: string;
  upstreamMs: number;
  /** The attempt whose response goes to the client (its lease still held: the responder releases it). */
  answer?: Attempt & { response: UpstreamResponse };
  error?: unknown;
}

export interface SendInput {
  endpoint: Endpoint;
  request: FastifyRequest;
  provider: RoutableProvider;
  priority: Priority;
  payload: string;
  signal: ClientGone;
  requestId: string;
}

/**
 * Sends the request upstream with the admitted lease and applies the retry table (domain/retry-table.ts):
 * at most one retry, on another key that is free right now. A refused attempt's lease is released here
 * with what the upstream said (KeyPool cools the key down, Adaptive learns).
 */
@Injectable()
export class SendStage {
  constructor(
    private readonly upstream: UpstreamClient,
    private readonly leases: LeaseKeeper,
    private readonly admit: AdmitStage,
  ) {}

  async deliver(input: SendInput, first: KeyLease): Promise<Delivery> {
    const tried: string[] = [];
    let lease = first;
    let upstreamMs = 0;
    try {
      for (;;) {
        tried.push(lease.keyId);
        this.leases.hold(lease);
        const attempt = await this.send(input, lease);
        const observed: Observed = attempt.error
          ? { failure: attempt.error.kind }
          : { status: attempt.response!.statusCode, retryAfter: attempt.response!.headers['retry-after'] };
        const context = {
          attempt: tried.length,
          clientGone: input.signal.aborted,
          providerName: input.provider.name,
          timeoutMs: lease.timeoutMs,
        };
        if (retryDecision(observed, context).action === 'respond') {
          this.leases.answers(lease, input.request.principal);
          return {
            attempts: tried.length,
            keyId: lease.keyId,
            upstreamMs,
            answer: attempt as Delivery['answer'],
          };
        }
        // Not the answer: the lease goes back with what happened, then the table decides (the
        // client may have gone meanwhile).
        const settled = await this.settle(attempt);
        upstreamMs += settled.upstreamMs;
        await this.leases.release(lease, settled.outcome);
        const decision = retryDecision(observed, { ...context, clientGone: input.signal.aborted });
        if (decision.action === 'respond')
          throw new Error('unreachable: an answer for the client was settled');
        const next =
          decision.action === 'retry'
            ? await this.admit.another(input.provider.id, input.priority, tried)
            : null;
        if (!next)
          return {
            attempts: tried.length,
            keyId: lease.keyId,
            upstreamMs,
            error: reject(decision.rejection),
          };
        lease = next;
      }
    } catch (error) {
      await this.leases.releaseIfHeld(lease);
      return { attempts: tried.length, keyId: lease.keyId, upstreamMs, error };
    }
  }

  private send(input: SendInput, lease: KeyLease): Promise<Attempt> {
    // In a span when tracing; with it off, the request goes out without a closure of its own.
    if (!tracingEnabled()) return this.attempt(input, lease, null);
    return withSpan('relay.upstream', (span) => this.attempt(input, lease, span), {
      provider: lease.providerName,
      upstream_key_id: lease.keyId,
    }) as Promise<Attempt>;
  }

  private attempt(input: SendInput, lease: KeyLease, span: Span | null): Promise<Attempt> {
    const startedAt = performance.now();
    const headers = upstreamRequestHeaders(
      input.request.headers,
      lease.apiKey,
      lease.headers,
      input.requestId,
    );
    if (span) injectTraceContext(headers, span);
    return this.upstream
      .send({
        baseUrl: lease.baseUrl,
        path: UPSTREAM_PATHS[input.endpoint],
        method: 'POST',
        headers,
        body: input.payload,
        signal: input.signal,
        timeoutMs: lease.timeoutMs,
      })
      .then(
        (response): Attempt => {
          span?.setAttribute('http.response.status_code', response.statusCode);
          return { lease, response, startedAt };
        },
        (err: unknown): Attempt => ({ lease, error: classify(err), startedAt }),
      );
  }

  /**
   * An attempt that is not the answer: what the key pool is told — for an upstream refusal its
   * (small) error body, by which Adaptive tells concurrency 429s from RPM ones — and the time spent upstream.
   */
  private async settle(attempt: Attempt): Promise<{ upstreamMs: number; outcome: KeyOutcome }> {
    const { response, error } = attempt;
    if (error)
      return {
        upstreamMs: performance.now() - attempt.startedAt,
        outcome: { error: failureOutcome(error.kind) },
      };
    const errorText = await readCapped(response!.body, 16_384);
    return {
      upstreamMs: performance.now() - attempt.startedAt,
      outcome: {
        status: response!.statusCode,
        headers: response!.headers,
        upstreamError: parseUpstreamJson(errorText)?.error ?? null,
      },
    };
  }
}

/** Reads at most `limit` bytes of a body as text and discards the rest. */
async function readCapped(body: UpstreamBody, limit: number): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      if (size < limit) {
        chunks.push(chunk as Buffer);
        size += (chunk as Buffer).length;
      }
    }
  } catch {
    // a body cut short still tells what it managed to
  }
  return Buffer.concat(chunks).toString('utf8').slice(0, limit);
}
