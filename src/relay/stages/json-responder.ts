import { Injectable } from '@nestjs/common';
import { performance } from 'node:perf_hooks';
import { gatewayTiming } from '../domain/gateway-headers.js';
import { clientResponseHeaders } from '../domain/headers.js';
import { parseUpstreamJson, upstreamClientError, upstreamUsage } from '../domain/outcome.js';
import type { Answer, RespondInput } from './answer.js';
import { LeaseKeeper } from './lease-keeper.js';
import { reject } from './reject.js';

/** A whole (non-streamed) upstream answer: 2xx relayed as it came, other 4xx in the one error shape. */
@Injectable()
export class JsonResponder {
  constructor(private readonly leases: LeaseKeeper) {}

  async respond({ reply, lease, response, startedAt, queueMs, upstreamMs }: RespondInput): Promise<Answer> {
    const text = await response.body.text();
    upstreamMs += performance.now() - startedAt;
    const status = response.statusCode;
    // A 4xx is read whole (its error); an answer only for its usage.
    const parsed = status >= 400 ? parseUpstreamJson(text) : null;
    const usage = status >= 400 ? parsed?.usage : upstreamUsage(text);
    const promptTokens = usage?.prompt_tokens ?? 0;
    const completionTokens = usage?.completion_tokens ?? 0;
    const outcome = { status, headers: response.headers, tokens: promptTokens + completionTokens };
    const { overheadMs, headers: ours } = gatewayTiming(reply.elapsedTime, queueMs, upstreamMs, lease.keyId);
    const answer: Answer = {
      status,
      outcome: 'ok',
      errorCode: null,
      promptTokens,
      completionTokens,
      upstreamMs,
      overheadMs,
    };
    if (status >= 400) {
      const rejection = upstreamClientError(status, parsed, lease.apiKey);
      try {
        await this.leases.release(lease, outcome);
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
    void reply.send(text);
    // Reported after the answer is on its way: the key pool's bookkeeping is not the client's wait.
    try {
      await this.leases.release(lease, outcome);
    } catch (error) {
      return { ...answer, error };
    }
    return answer;
  }
}
