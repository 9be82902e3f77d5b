import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

/**
 * A fake Anthropic provider: a REAL HTTP server on 127.0.0.1 speaking the Messages API (the only
 * fake the tests use is the LLM provider — docs/CONVENTIONS.md). Speaks enough of it for the SDKs:
 *
 *   POST /v1/messages   JSON, or SSE with `stream: true` (message_start, content_block_start,
 *                       content_block_delta, content_block_stop, message_delta, message_stop, with
 *                       `event:` lines); a tool_use block when the request has `tools`.
 *
 * It checks `x-api-key` (401 authentication_error without one, or with one not in `keys` when given)
 * and `anthropic-version` (400 invalid_request_error without it), like Anthropic does.
 *
 * Programmable per test with rules (first matching rule with uses left wins), like FakeProvider:
 *
 *   const fake = await FakeAnthropic.start({ keys: ['sk-ant-a', 'sk-ant-b'] });
 *   fake.when({ key: 'sk-ant-a', times: 1, reply: FakeAnthropic.rateLimited(3) }); // 429 rate_limit_error
 *   fake.when({ reply: FakeAnthropic.overloaded() });                             // 529 overloaded_error
 *   fake.when({ reply: { delayMs: 500 } });                                       // slow, then normal answer
 *   fake.when({ reply: { text: 'Hi', usage: { cache_read_input_tokens: 7 } } });
 *   fake.when({ reply: (req) => (req.body.model === 'x' ? { status: 500 } : undefined) });
 *
 * Everything it saw is recorded in `requests` (method, path, headers, parsed body, the `x-api-key`,
 * status answered, whether the client went away early).
 */
export interface AnthropicRecordedRequest {
  /** Arrival time (Date.now()). */
  at: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body (or the raw text when not JSON; undefined without a body). */
  body: any;
  /** The `x-api-key` the client sent, or null. */
  key: string | null;
  /** The status answered (set once the answer starts). */
  status?: number;
  /** true when the client closed the connection before the answer was complete. */
  closedEarly: boolean;
  endedAt?: number;
}

/** Usage fields the answer reports (defaults: input from the request's size, output = word count, caches 0). */
export interface AnthropicUsage {
  input_tokens?: number;
  output_tokens?: number;
  cache_read_input_tokens?: number;
  cache_creation_input_tokens?: number;
}

export interface AnthropicFakeReply {
  /** HTTP status; default 200 (the normal Messages answer). */
  status?: number;
  headers?: Record<string, string>;
  /** JSON body replacing the normal one (errors default to Anthropic's error shape). */
  body?: unknown;
  /** Wait this long before sending the status line. */
  delayMs?: number;
  /** Streams: pause between SSE events. */
  chunkDelayMs?: number;
  /** The answer's text (one content_block_delta per word when streaming). */
  text?: string;
  /** Usage fields overriding the defaults. */
  usage?: AnthropicUsage;
  /** Destroy the socket instead of answering (connection error for the client). */
  destroy?: boolean;
  /** Streams: destroy the socket after this many events (a stream cut short upstream). */
  cutAfterEvents?: number;
}

export interface AnthropicFakeRule {
  /** Only requests made with this x-api-key. */
  key?: string;
  /** Only this path (exact, e.g. /v1/messages). */
  path?: string;
  /** Only this model (from the JSON body). */
  model?: string;
  /** How many requests the rule answers (default: unlimited). */
  times?: number;
  reply: AnthropicFakeReply | ((req: AnthropicRecordedRequest) => AnthropicFakeReply | undefined);
}

export interface FakeAnthropicOptions {
  /** Accepted x-api-key values (default: any non-empty key). */
  keys?: string[];
  /** Default answer text. */
  text?: string;
  /** Fixed port (default: random). */
  port?: number;
}

interface ActiveRule extends AnthropicFakeRule {
  used: number;
}

export class FakeAnthropic {
  readonly requests: AnthropicRecordedRequest[] = [];
  keys: string[] | null;
  text: string;
  url = '';
  private rules: ActiveRule[] = [];
  private readonly sockets = new Set<Socket>();
  private server!: http.Server;

  private constructor(options: FakeAnthropicOptions) {
    this.keys = options.keys ?? null;
    this.text = options.text ?? 'Hello from the fake Anthropic provider.';
  }

  static async start(options: FakeAnthropicOptions = {}): Promise<FakeAnthropic> {
    const fake = new FakeAnthropic(options);
    fake.server = http.createServer((req, res) => void fake.handle(req, res));
    fake.server.keepAliveTimeout = 5000;
    fake.server.on('connection', (socket: Socket) => {
      fake.sockets.add(socket);
      socket.on('close', () => fake.sockets.delete(socket));
    });
    await new Promise<void>((resolve) => fake.server.listen(options.port ?? 0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** The base URL an anthropic provider is configured with (ending in /v1, like https://api.anthropic.com/v1). */
  get baseUrl(): string {
    return `${this.url}/v1`;
  }

  /** Adds a rule; rules are tried in the order they were added. */
  when(rule: AnthropicFakeRule): this {
    this.rules.push({ ...rule, used: 0 });
    return this;
  }

  /** Forgets rules and recordings (options stay). */
  reset(): void {
    this.rules = [];
    this.requests.length = 0;
  }

  requestsFor(key: string): AnthropicRecordedRequest[] {
    return this.requests.filter((r) => r.key === key);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- canned replies ----------------------------------------------------------------------

  /** 429 rate_limit_error with retry-after (seconds) and Anthropic's anthropic-ratelimit-* headers. */
  static rateLimited(
    retryAfterSeconds: number | null,
    headers: Record<string, string> = {},
  ): AnthropicFakeReply {
    const reset = new Date(Date.now() + (retryAfterSeconds ?? 1) * 1000).toISOString();
    return {
      status: 429,
      headers: {
        ...(retryAfterSeconds !== null ? { 'retry-after': String(retryAfterSeconds) } : {}),
        'anthropic-ratelimit-requests-limit': '50',
        'anthropic-ratelimit-requests-remaining': '0',
        'anthropic-ratelimit-requests-reset': reset,
        ...headers,
      },
      body: anthropicError(
        'rate_limit_error',
        'Number of request tokens has exceeded your per-minute rate limit',
      ),
    };
  }

  /** 529 overloaded_error (Anthropic's "the API is temporarily overloaded"). */
  static overloaded(): AnthropicFakeReply {
    return { status: 529, body: anthropicError('overloaded_error', 'Overloaded') };
  }

  /** 500 api_error (or another status with it). */
  static serverError(status = 500): AnthropicFakeReply {
    return { status, body: anthropicError('api_error', 'Internal server error') };
  }

  static unauthorized(): AnthropicFakeReply {
    return { status: 401, body: anthropicError('authentication_error', 'invalid x-api-key') };
  }

  static invalidRequest(message: string): AnthropicFakeReply {
    return { status: 400, body: anthropicError('invalid_request_error', message) };
  }

  static slow(delayMs: number): AnthropicFakeReply {
    return { delayMs };
  }

  // ---- server --------------------------------------------------------------------------------

  private async handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const raw = await readBody(req);
    let body: any;
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw);
      } catch {
        body = raw;
      }
    }
    const url = new URL(req.url ?? '/', this.url);
    const key = (req.headers['x-api-key'] as string | undefined) ?? null;
    const record: AnthropicRecordedRequest = {
      at: Date.now(),
      method: req.method ?? 'GET',
      path: url.pathname,
      headers: req.headers,
      body,
      key,
      closedEarly: false,
    };
    this.requests.push(record);
    let finished = false;
    res.on('finish', () => {
      finished = true;
      record.endedAt ??= Date.now();
    });
    res.on('close', () => {
      if (!finished) record.closedEarly = true;
      record.endedAt ??= Date.now();
    });

    const reply = this.ruleReply(record) ?? {};
    if (reply.delayMs) await sleep(reply.delayMs);
    if (res.destroyed) return;
    if (reply.destroy) {
      req.socket.destroy();
      return;
    }
    const answer = (status: number, json: unknown, headers?: Record<string, string>) => {
      record.status = status;
      sendJson(res, status, json, headers);
    };
    if (!key || (this.keys !== null && !this.keys.includes(key)))
      return answer(401, anthropicError('authentication_error', 'invalid x-api-key'));
    if (!req.headers['anthropic-version'])
      return answer(400, anthropicError('invalid_request_error', 'anthropic-version: header is required'));
    const status = reply.status ?? 200;
    if (status !== 200)
      return answer(status, reply.body ?? anthropicError('api_error', `fake error ${status}`), reply.headers);
    if (req.method !== 'POST' || url.pathname !== '/v1/messages')
      return answer(404, anthropicError('not_found_error', `Unknown path ${url.pathname}`));
    if (typeof body !== 'object' || body === null || typeof body.model !== 'string')
      return answer(400, anthropicError('invalid_request_error', 'model: Field required'));

    const model: string = body.model;
    const text = reply.text ?? this.text;
    const words = text.split(/(?<= )/);
    const inputTokens = Math.max(1, Math.ceil(JSON.stringify(body.messages ?? '').length / 4));
    const usage = {
      input_tokens: inputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: words.length,
      ...reply.usage,
    };
    const id = `msg_fake${this.requests.length}`;
    const tool = Array.isArray(body.tools) && body.tools.length > 0 ? body.tools[0] : null;
    const toolBlock = tool
      ? {
          type: 'tool_use',
          id: `toolu_fake${this.requests.length}`,
          name: String(tool.name),
          input: { q: 'fake' },
        }
      : null;
    const stopReason = toolBlock ? 'tool_use' : 'end_turn';

    if (body.stream === true) {
      record.status = 200;
      res.writeHead(200, {
        'content-type': 'text/event-stream; charset=utf-8',
        'cache-control': 'no-cache',
        connection: 'keep-alive',
        ...reply.headers,
      });
      const send = async (event: string, data: unknown) => {
        if (reply.chunkDelayMs) await sleep(reply.chunkDelayMs);
        if (res.destroyed) return false;
        res.write(`event: ${event}\ndata: ${JSON.stringify({ type: event, ...(data as object) })}\n\n`);
        return true;
      };
      const startUsage = {
        input_tokens: usage.input_tokens,
        cache_creation_input_tokens: usage.cache_creation_input_tokens,
        cache_read_input_tokens: usage.cache_read_input_tokens,
        output_tokens: 1,
      };
      const steps: [string, unknown][] = [
        [
          'message_start',
          {
            message: {
              id,
              type: 'message',
              role: 'assistant',
              model,
              content: [],
              stop_reason: null,
              stop_sequence: null,
              usage: startUsage,
            },
          },
        ],
        ['content_block_start', { index: 0, content_block: { type: 'text', text: '' } }],
        ['ping', {}],
        ...words.map((w): [string, unknown] => [
          'content_block_delta',
          { index: 0, delta: { type: 'text_delta', text: w } },
        ]),
        ['content_block_stop', { index: 0 }],
      ];
      if (toolBlock) {
        steps.push(
          ['content_block_start', { index: 1, content_block: { ...toolBlock, input: {} } }],
          [
            'content_block_delta',
            { index: 1, delta: { type: 'input_json_delta', partial_json: JSON.stringify(toolBlock.input) } },
          ],
          ['content_block_stop', { index: 1 }],
        );
      }
      steps.push(
        [
          'message_delta',
          {
            delta: { stop_reason: stopReason, stop_sequence: null },
            usage: { output_tokens: usage.output_tokens },
          },
        ],
        ['message_stop', {}],
      );
      let sent = 0;
      for (const [event, data] of steps) {
        if (reply.cutAfterEvents !== undefined && sent >= reply.cutAfterEvents) {
          await sleep(20); // what was written reaches the client first
          res.destroy();
          return;
        }
        if (!(await send(event, data))) return;
        sent++;
      }
      res.end();
      return;
    }
    const content: unknown[] = [{ type: 'text', text }];
    if (toolBlock) content.push(toolBlock);
    return answer(
      200,
      reply.body ?? {
        id,
        type: 'message',
        role: 'assistant',
        model,
        content,
        stop_reason: stopReason,
        stop_sequence: null,
        usage,
      },
      reply.headers,
    );
  }

  private ruleReply(record: AnthropicRecordedRequest): AnthropicFakeReply | undefined {
    for (const rule of this.rules) {
      if (rule.times !== undefined && rule.used >= rule.times) continue;
      if (rule.key !== undefined && rule.key !== record.key) continue;
      if (rule.path !== undefined && rule.path !== record.path) continue;
      if (rule.model !== undefined && rule.model !== record.body?.model) continue;
      const reply = typeof rule.reply === 'function' ? rule.reply(record) : rule.reply;
      if (reply === undefined) continue;
      rule.used++;
      return reply;
    }
    return undefined;
  }
}

/** Anthropic's error body: `{"type":"error","error":{"type","message"}}`. */
export function anthropicError(type: string, message: string): unknown {
  return { type: 'error', error: { type, message } };
}

function sendJson(
  res: http.ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = JSON.stringify(body);
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'request-id': `req_fake${Date.now()}`,
    ...headers,
  });
  res.end(text);
}

function readBody(req: http.IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    req.on('error', reject);
  });
}

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}
