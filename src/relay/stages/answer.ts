import type { FastifyReply } from 'fastify';
import type { KeyLease } from '../../key-pool/key-pool.types.js';
import type { Exchange } from '../domain/exchange.js';
import type { CapturedBodies } from '../../requests/services/body-capture.service.js';
import type { UpstreamResponse } from '../infrastructure/upstream-client.js';

/** What a responder needs: the attempt to answer with and the time already spent queueing and upstream. */
export interface RespondInput {
  reply: FastifyReply;
  lease: KeyLease;
  response: UpstreamResponse;
  /** How the answer is read and given to the client (the attempt's exchange). */
  exchange: Exchange;
  /** Floodgate asked for stream usage on the client's behalf: the extra usage event is dropped. */
  injectedUsage: boolean;
  /** A stored answer's id, once known (the Responses API): called before the client gets the id. */
  onCreated?: (id: string) => void;
  /** performance.now() when the attempt was sent. */
  startedAt: number;
  queueMs: number;
  /** Upstream time of earlier attempts. */
  upstreamMs: number;
  /** A routed request: the alias the client sent, shown as the answer's `model` (null: relayed as it came). */
  alias: string | null;
  /** Body capture on for this request (its key's or route's `capture_bodies`): the relayed text goes here. */
  capture?: CapturedBodies | null;
}

/** What the client was answered, for the log and the metrics. */
export interface Answer {
  status: number;
  outcome: string;
  errorCode: string | null;
  promptTokens: number;
  completionTokens: number;
  /** Of promptTokens, how many the upstream served from its prompt cache (priced at the cached rate). */
  cachedPromptTokens?: number;
  /** Upstream time, all attempts. */
  upstreamMs: number;
  overheadMs: number;
  /** Thrown once the answer is accounted: an upstream 4xx passed on in the error shape, or a failed release. */
  error?: unknown;
}
