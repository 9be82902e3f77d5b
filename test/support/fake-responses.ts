import type http from 'node:http';
import type { FakeReply, RecordedRequest } from './fake-provider.js';

/**
 * The fake provider's OpenAI Responses API (hooked into fake-provider.ts for paths under
 * /v1/responses):
 *
 *   POST   /v1/responses                  JSON `{id, object: 'response', model, output, usage}`, or SSE
 *                                          (`event:` lines: response.created, response.in_progress,
 *                                          response.output_text.delta per word, response.completed with usage)
 *   GET    /v1/responses/{id}             the stored response
 *   GET    /v1/responses/{id}/input_items its input as a list
 *   DELETE /v1/responses/{id}             `{id, object: 'response', deleted: true}`
 *
 * Stored responses belong to the upstream key that created them: another key's GET/DELETE is a 404
 * (as OpenAI answers for another project's). `previous_response_id` must name a stored response of
 * any key (404 otherwise). FakeReply's `text`, `chunkDelayMs`, `firstEventDelayMs`, `body` apply.
 */
export class FakeResponses {
  /** id → the stored response and the key that created it. */
  readonly stored = new Map<string, { key: string | null; response: Record<string, any>; input: unknown }>();
  private seq = 0;

  async handle(
    record: RecordedRequest,
    reply: FakeReply,
    text: string,
    res: http.ServerResponse,
  ): Promise<void> {
    const rest = record.path.slice('/v1/responses'.length);
    if (record.method === 'POST' && rest === '') return this.create(record, reply, text, res);
    const match = /^\/([^/]+)(\/input_items)?$/.exec(rest);
    const id = match ? decodeURIComponent(match[1]!) : '';
    const entry = this.stored.get(id);
    if (!match || !entry || entry.key !== record.key || (match[2] && record.method !== 'GET'))
      return send(res, 404, notFound(id));
    if (match[2])
      return send(res, 200, {
        object: 'list',
        data: [{ id: `msg_in_${id}`, type: 'message', role: 'user', content: entry.input }],
        has_more: false,
      });
    if (record.method === 'GET') return send(res, 200, entry.response);
    if (record.method === 'DELETE') {
      this.stored.delete(id);
      return send(res, 200, { id, object: 'response', deleted: true });
    }
    return send(res, 404, notFound(id));
  }

  private async create(
    record: RecordedRequest,
    reply: FakeReply,
    text: string,
    res: http.ServerResponse,
  ): Promise<void> {
    const body = record.body ?? {};
    const previous = body.previous_response_id;
    if (typeof previous === 'string' && !this.stored.has(previous))
      return send(res, 404, notFound(previous, 'previous_response_id'));
    const id = `resp_fake${++this.seq}_${Date.now().toString(36)}`;
    const model = typeof body.model === 'string' ? body.model : 'gpt-4o-mini';
    const words = text.split(/(?<= )/);
    const inputTokens = Math.max(1, Math.ceil(JSON.stringify(body.input ?? '').length / 4));
    const usage = {
      input_tokens: inputTokens,
      input_tokens_details: { cached_tokens: inputTokens > 2 ? 2 : 0 },
      output_tokens: words.length,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: inputTokens + words.length,
    };
    const base = {
      id,
      object: 'response',
      created_at: Math.floor(Date.now() / 1000),
      model,
      previous_response_id: previous ?? null,
    };
    const message = {
      type: 'message',
      id: `msg_${id}`,
      status: 'completed',
      role: 'assistant',
      content: [{ type: 'output_text', text, annotations: [] }],
    };
    const done = { ...base, status: 'completed', output: [message], usage };
    if (body.store !== false) this.stored.set(id, { key: record.key, response: done, input: body.input });
    if (body.stream !== true) return send(res, 200, reply.body ?? done, reply.headers);

    res.writeHead(200, {
      'content-type': 'text/event-stream',
      'cache-control': 'no-cache',
      connection: 'keep-alive',
      ...reply.headers,
    });
    if (reply.firstEventDelayMs) {
      res.flushHeaders();
      record.headersSentAt = Date.now();
      await sleep(reply.firstEventDelayMs);
      if (res.destroyed) return;
    }
    let sequence = 0;
    const event = (type: string, data: Record<string, unknown>) => {
      record.firstEventAt ??= Date.now();
      res.write(
        `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: sequence++, ...data })}\n\n`,
      );
    };
    const pending = { ...base, status: 'in_progress', output: [], usage: null };
    event('response.created', { response: pending });
    event('response.in_progress', { response: pending });
    for (const delta of words) {
      if (reply.chunkDelayMs) await sleep(reply.chunkDelayMs);
      if (res.destroyed) return;
      event('response.output_text.delta', { item_id: message.id, output_index: 0, content_index: 0, delta });
    }
    event('response.output_text.done', { item_id: message.id, output_index: 0, content_index: 0, text });
    event('response.completed', { response: done });
    res.end();
  }
}

function notFound(id: string, param: string | null = null): unknown {
  return {
    error: {
      message: `Response with id '${id}' not found.`,
      type: 'invalid_request_error',
      param,
      code: null,
    },
  };
}

function send(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    ...headers,
  });
  res.end(text);
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
