import { Injectable } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { gatewayTiming } from '../domain/gateway-headers.js';
import { clientResponseHeaders } from '../domain/headers.js';
import type { UsageCounts } from '../domain/exchange.js';
import type { Answer, RespondInput } from './answer.js';
import { LeaseKeeper } from './lease-keeper.js';
import type { TokenCounts } from '../../spend/services/budget.service.js';
import { reject } from './reject.js';

/**
 * A whole (non-streamed) upstream answer: 2xx relayed as it came (a routed request's with the alias
 * as its `model`), other 4xx in the one error shape.
 */
@Injectable()
export class JsonResponder {
  constructor(private readonly leases: LeaseKeeper) {}

  async respond({
    reply,
    lease,
    response,
    startedAt,
    queueMs,
    upstreamMs,
    alias,
    exchange,
    onCreated,
    capture,
  }: RespondInput): Promise<Answer> {
    // A whole answer has usually arrived with its headers: read it without a promise then.
    const text = response.body.textNow?.() ?? (await response.body.text());
    upstreamMs += performance.now() - startedAt;
    const status = response.statusCode;
    const { overheadMs, headers: ours } = gatewayTiming(reply.elapsedTime, queueMs, upstreamMs, lease.keyId);
    if (status >= 400) {
      // A 4xx is read whole: its error, and its usage if it has one.
      const usage = usageOf(exchange.usage(text));
      const rejection = exchange.clientError(status, text, lease.apiKey);
      const answer = answerOf(status, usage, upstreamMs, overheadMs);
      try {
        await this.leases.release(
          lease,
          { status, headers: response.headers, tokens: usage.promptTokens + usage.completionTokens },
          usage,
        );
      } catch (error) {
        return { ...answer, error };
      }
      return {
        ...answer,
        outcome: 'client_error',
        errorCode: rejection.code,
        error: reject(rejection, ours),
      };
    }
    void reply.status(status);
    // The guard's rate-limit headers (and x-request-id) are already on the reply; upstream headers
    // never replace them. Set one by one: no merged copies of the three header sets per request.
    const upstream = clientResponseHeaders(response.headers);
    for (const name in upstream) if (!reply.hasHeader(name)) void reply.header(name, upstream[name]);
    for (const name in ours) void reply.header(name, ours[name]);
    const out = exchange.answer(text, alias);
    if (onCreated && exchange.createdId) {
      const id = exchange.createdId(text);
      if (id) onCreated(id);
    }
    void reply.send(out);
    capture?.add(out);
    // After the answer is on its way: its usage (read for accounting only) and the key pool's
    // bookkeeping are not the client's wait.
    const usage = usageOf(exchange.usage(text));
    const answer = answerOf(status, usage, upstreamMs, overheadMs);
    try {
      await this.leases.release(
        lease,
        { status, headers: response.headers, tokens: usage.promptTokens + usage.completionTokens },
        usage,
      );
    } catch (error) {
      return { ...answer, error };
    }
    return answer;
  }
}

/** The counts that price the answer (its spend settlement: docs/spend.md "Budgets"), and the log's. */
function usageOf(usage: UsageCounts): TokenCounts {
  return {
    promptTokens: usage.prompt,
    completionTokens: usage.completion,
    cachedPromptTokens: usage.cached,
  };
}

function answerOf(status: number, usage: TokenCounts, upstreamMs: number, overheadMs: number): Answer {
  return {
    status,
    outcome: 'ok',
    errorCode: null,
    promptTokens: usage.promptTokens,
    completionTokens: usage.completionTokens,
    cachedPromptTokens: usage.cachedPromptTokens,
    upstreamMs,
    overheadMs,
  };
}
