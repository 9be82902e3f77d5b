import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { FakeResponses } from './fake-responses.js';

/**
 * A fake OpenAI-compatible LLM provider: a REAL HTTP server on 127.0.0.1 (the only fake the tests
 * use — see docs/CONVENTIONS.md). Speaks enough of the protocol for the official SDK:
 *
 *   POST /v1/chat/completions   JSON, or SSE with `stream: true` (usage chunk with stream_options.include_usage)
 *   POST /v1/completions        JSON, or SSE with `stream: true`
 *   POST /v1/embeddings         JSON
 *   GET  /v1/models, /v1/models/{id}   (ids may contain `/`)
 *
 * Programmable per test with rules (first matching rule with uses left wins):
 *
 *   const fake = await FakeProvider.start();
 *   fake.when({ key: 'sk-a', times: 1, reply: FakeProvider.rateLimited(3) });   // one 429, Retry-After: 3
 *   fake.when({ key: 'sk-b', reply: FakeProvider.unauthorized() });             // always 401
 *   fake.when({ path: '/v1/embeddings', reply: { delayMs: 500 } });             // slow, then normal answer
 *   fake.when({ reply: { firstEventDelayMs: 1500 } });    // stream: headers at once, first event 1.5 s later
 *   fake.when({ reply: (req) => (req.body.model === 'x' ? { status: 500 } : {}) });
 *
 *   const gate = FakeProvider.hold();                   // no timing: held until the test says so
 *   fake.when({ reply: (req) => (req.body.messages[0].content === 'blocker' ? { hold: gate } : {}) });
 *   await gate.held(1);                                 // the blocker is upstream, waiting
 *   gate.release();                                     // it (and any held later) answers now
 *
 * Built-in limits (options or setters): `maxConcurrent` (429 "concurrency" above N in flight) and
 * `rateLimit` (429 "requests" above N per window), for Adaptive's and the retreat bucket's tests.
 *
 * Everything it saw is recorded: `requests` (method, path, headers, parsed body, the key from
 * `Authorization: Bearer` or `x-api-key`, status answered, whether the client went away early), plus
 * `openConnections`, `totalConnections`, `inFlight` and `maxInFlight`.
 */
export interface RecordedRequest {
  /** Arrival time (Date.now()). */
  at: number;
  method: string;
  path: string;
  headers: http.IncomingHttpHeaders;
  /** Parsed JSON body (or the raw text when not JSON; undefined without a body). */
  body: any;
  /** The upstream key the client used (Bearer token or x-api-key), or null. */
  key: string | null;
  /** The status answered (set once the answer starts). */
  status?: number;
  /** true when the client closed the connection before the answer was complete. */
  closedEarly: boolean;
  /** When the exchange ended (complete or closed). */
  endedAt?: number;
  /** Streams: when the status line and headers were flushed, and when the first SSE event was written. */
  headersSentAt?: number;
  firstEventAt?: number;
}

export interface FakeReply {
  /** HTTP status; default 200 (the normal OpenAI answer for the path). */
  status?: number;
  headers?: Record<string, string>;
  /** JSON body replacing the normal one (errors default to the OpenAI error shape). */
  body?: unknown;
  /** Wait this long before sending the status line. */
  delayMs?: number;
  /** Streams: pause between SSE chunks. */
  chunkDelayMs?: number;
  /** Streams: send the status line and headers at once, then hold the first SSE event this long. */
  firstEventDelayMs?: number;
  /** The completion text to answer with (split into one chunk per word when streaming). */
  text?: string;
  /** Destroy the socket instead of answering (connection error for the client). */
  destroy?: boolean;
  /**
   * Wait until this hold is released (FakeProvider.hold()) before answering — a request that must
   * stay upstream while the test does something, without guessing how long that takes. Applied
   * before `delayMs`; a client that goes away meanwhile ends the wait.
   */
  hold?: FakeHold;
}

/**
 * A gate requests can be held at (FakeReply.hold): nothing passes until `release()`, after which
 * everything does (held requests at once, later ones without waiting). `holding` says how many
 * requests wait at it now; `held(n)` resolves once that many do.
 */
export class FakeHold {
  private released = false;
  private readonly releases: (() => void)[] = [];
  private readonly watchers: { n: number; resolve: () => void }[] = [];
  holding = 0;

  /** Resolves once `n` requests are held here at the same time (at once if they already are). */
  held(n = 1): Promise<void> {
    if (this.holding >= n) return Promise.resolve();
    return new Promise((resolve) => this.watchers.push({ n, resolve }));
  }

  release(): void {
    this.released = true;
    for (const r of this.releases.splice(0)) r();
  }

  /** Held until `release()` or until `gone` resolves (the client closed the connection). */
  async pass(gone: Promise<void>): Promise<void> {
    if (this.released) return;
    this.holding++;
    for (const w of [...this.watchers]) {
      if (this.holding < w.n) continue;
      this.watchers.splice(this.watchers.indexOf(w), 1);
      w.resolve();
    }
    try {
      await Promise.race([new Promise<void>((resolve) => this.releases.push(resolve)), gone]);
    } finally {
      this.holding--;
    }
  }
}

export interface FakeRule {
  /** Only requests made with this upstream key. */
  key?: string;
  /** Only this path (exact, e.g. /v1/chat/completions). */
  path?: string;
  /** Only this model (from the JSON body). */
  model?: string;
  /** How many requests the rule answers (default: unlimited). */
  times?: number;
  reply: FakeReply | ((req: RecordedRequest) => FakeReply | undefined);
}

export interface FakeProviderOptions {
  /** Models listed by /v1/models. */
  models?: string[];
  /** Default completion text. */
  text?: string;
  maxConcurrent?: number | null;
  rateLimit?: { requests: number; windowMs: number } | null;
  /** Fixed port (default: random). */
  port?: number;
}

interface ActiveRule extends FakeRule {
  used: number;
}

export class FakeProvider {
  readonly requests: RecordedRequest[] = [];
  openConnections = 0;
  totalConnections = 0;
  inFlight = 0;
  maxInFlight = 0;
  /**
   * Requests the provider is still working on: from arrival until it writes the end of its answer
   * (or the client goes away). `maxConcurrent` counts these, as a real provider does: its slot is
   * free once the answer leaves, before the client has read it. (`inFlight` counts until the
   * response's 'close', which a loaded event loop runs after the client already sent its next
   * request: counted by that, the fake refused a request the client could not have known was over
   * the limit.)
   */
  working = 0;
  maxConcurrent: number | null;
  rateLimit: { requests: number; windowMs: number } | null;
  models: string[];
  text: string;
  /** The Responses API (/v1/responses…: fake-responses.ts). */
  readonly responses = new FakeResponses();
  private rules: ActiveRule[] = [];
  private readonly sockets = new Set<Socket>();
  private readonly admitted: number[] = [];
  private server!: http.Server;
  url = '';

  private constructor(options: FakeProviderOptions) {
    this.models = options.models ?? [
      'gpt-4o-mini',
      'gpt-4o',
      'text-embedding-3-small',
      'org/model-with-slash',
    ];
    this.text = options.text ?? 'Hello from the fake provider.';
    this.maxConcurrent = options.maxConcurrent ?? null;
    this.rateLimit = options.rateLimit ?? null;
  }

  static async start(options: FakeProviderOptions = {}): Promise<FakeProvider> {
    const fake = new FakeProvider(options);
    fake.server = http.createServer((req, res) => void fake.handle(req, res));
    fake.server.keepAliveTimeout = 5000;
    fake.server.on('connection', (socket: Socket) => {
      fake.openConnections++;
      fake.totalConnections++;
      fake.sockets.add(socket);
      socket.on('close', () => {
        fake.openConnections--;
        fake.sockets.delete(socket);
      });
    });
    await new Promise<void>((resolve) => fake.server.listen(options.port ?? 0, '127.0.0.1', resolve));
    fake.url = `http://127.0.0.1:${(fake.server.address() as AddressInfo).port}`;
    return fake;
  }

  /** The base URL a provider is configured with (OpenAI style, ending in /v1). */
  get baseUrl(): string {
    return `${this.url}/v1`;
  }

  /** Adds a rule; rules are tried in the order they were added. */
  when(rule: FakeRule): this {
    this.rules.push({ ...rule, used: 0 });
    return this;
  }

  /** Forgets rules and recordings (limits and options stay). */
  reset(): void {
    this.rules = [];
    this.requests.length = 0;
    this.admitted.length = 0;
    this.maxInFlight = this.inFlight;
  }

  requestsFor(key: string): RecordedRequest[] {
    return this.requests.filter((r) => r.key === key);
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---- canned replies ----------------------------------------------------------------------

  /** 429 with Retry-After (seconds) and OpenAI's x-ratelimit headers. */
  static rateLimited(retryAfterSeconds: number | null, headers: Record<string, string> = {}): FakeReply {
    return {
      status: 429,
      headers: {
        ...(retryAfterSeconds !== null ? { 'retry-after': String(retryAfterSeconds) } : {}),
        'x-ratelimit-limit-requests': '60',
        'x-ratelimit-remaining-requests': '0',
        'x-ratelimit-reset-requests': retryAfterSeconds !== null ? `${retryAfterSeconds}s` : '1s',
        ...headers,
      },
      body: errorBody('Rate limit reached for requests', 'requests', 'rate_limit_exceeded'),
    };
  }

  static unauthorized(): FakeReply {
    return {
      status: 401,
      body: errorBody('Incorrect API key provided', 'invalid_request_error', 'invalid_api_key'),
    };
  }

  static forbidden(): FakeReply {
    return {
      status: 403,
      body: errorBody('This key may not use this model', 'invalid_request_error', 'forbidden'),
    };
  }

  static serverError(status = 500): FakeReply {
    return {
      status,
      body: errorBody('The server had an error while processing your request', 'server_error', null),
    };
  }

  static slow(delayMs: number): FakeReply {
    return { delayMs };
  }

  /** A gate for FakeReply.hold: requests answered with `{ hold }` wait until its `release()`. */
  static hold(): FakeHold {
    return new FakeHold();
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
    const auth = req.headers.authorization;
    const key = auth?.startsWith('Bearer ')
      ? auth.slice(7)
      : ((req.headers['x-api-key'] as string | undefined) ?? null);
    const record: RecordedRequest = {
      at: Date.now(),
      method: req.method ?? 'GET',
      path: url.pathname,
      headers: req.headers,
      body,
      key,
      closedEarly: false,
    };
    this.requests.push(record);
    this.inFlight++;
    this.maxInFlight = Math.max(this.maxInFlight, this.inFlight);
    this.working++;
    let working = true;
    const done = () => {
      if (!working) return;
      working = false;
      this.working--;
    };
    const endResponse = res.end.bind(res) as (...args: unknown[]) => http.ServerResponse;
    res.end = ((...args: unknown[]) => {
      done();
      return endResponse(...args);
    }) as typeof res.end;
    let finished = false;
    const end = () => {
      if (record.endedAt === undefined) record.endedAt = Date.now();
    };
    res.on('finish', () => {
      finished = true;
      end();
    });
    const closed = new Promise<void>((resolve) =>
      res.on('close', () => {
        if (!finished) record.closedEarly = true;
        end();
        done();
        this.inFlight--;
        resolve();
      }),
    );

    let reply = this.ruleReply(record) ?? {};
    if (!reply.status || reply.status === 200) reply = { ...reply, ...(this.limitReply() ?? {}) };
    if (reply.hold) await reply.hold.pass(closed);
    if (reply.delayMs) await sleep(reply.delayMs);
    if (res.destroyed) return;
    if (reply.destroy) {
      req.socket.destroy();
      return;
    }
    const status = reply.status ?? 200;
    record.status = status;
    if (status !== 200)
      return sendJson(
        res,
        status,
        reply.body ?? errorBody(`fake error ${status}`, 'server_error', null),
        reply.headers,
      );

    const text = reply.text ?? this.text;
    if (url.pathname.startsWith('/v1/responses')) return this.responses.handle(record, reply, text, res);
    const model = typeof body?.model === 'string' ? body.model : 'gpt-4o-mini';
    if (req.method === 'GET' && url.pathname === '/v1/models') {
      return sendJson(res, 200, { object: 'list', data: this.models.map(modelObject) }, reply.headers);
    }
    if (req.method === 'GET' && url.pathname.startsWith('/v1/models/')) {
      const id = decodeURIComponent(url.pathname.slice('/v1/models/'.length));
      if (!this.models.includes(id))
        return sendJson(
          res,
          404,
          errorBody(`The model '${id}' does not exist`, 'invalid_request_error', 'model_not_found'),
        );
      return sendJson(res, 200, modelObject(id), reply.headers);
    }
    if (req.method !== 'POST')
      return sendJson(
        res,
        404,
        errorBody(`Unknown path ${url.pathname}`, 'invalid_request_error', 'not_found'),
      );
    const promptTokens = Math.max(
      1,
      Math.ceil(JSON.stringify(body?.messages ?? body?.prompt ?? body?.input ?? '').length / 4),
    );
    const words = text.split(/(?<= )/);
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: words.length,
      total_tokens: promptTokens + words.length,
    };
    const created = Math.floor(Date.now() / 1000);

    if (url.pathname === '/v1/chat/completions' || url.pathname === '/v1/completions') {
      const chat = url.pathname === '/v1/chat/completions';
      const id = `${chat ? 'chatcmpl' : 'cmpl'}-fake${this.requests.length}`;
      const object = chat ? 'chat.completion' : 'text_completion';
      if (body?.stream === true) {
        res.writeHead(200, {
          'content-type': 'text/event-stream',
          'cache-control': 'no-cache',
          connection: 'keep-alive',
          ...reply.headers,
        });
        if (reply.firstEventDelayMs) {
          // Without a flush Node holds the headers until the first write.
          res.flushHeaders();
          record.headersSentAt = Date.now();
          await sleep(reply.firstEventDelayMs);
          if (res.destroyed) return;
        }
        const send = (data: unknown) => {
          record.firstEventAt ??= Date.now();
          return res.write(`data: ${JSON.stringify(data)}\n\n`);
        };
        const chunkObject = chat ? 'chat.completion.chunk' : 'text_completion';
        const choice = (delta: string | null, finish: string | null, role = false) =>
          chat
            ? {
                index: 0,
                delta: delta === null ? {} : role ? { role: 'assistant', content: '' } : { content: delta },
                finish_reason: finish,
              }
            : { index: 0, text: delta ?? '', finish_reason: finish };
        if (chat) send({ id, object: chunkObject, created, model, choices: [choice('', null, true)] });
        for (const w of words) {
          if (reply.chunkDelayMs) await sleep(reply.chunkDelayMs);
          if (res.destroyed) return;
          send({ id, object: chunkObject, created, model, choices: [choice(w, null)] });
        }
        send({ id, object: chunkObject, created, model, choices: [choice(null, 'stop')] });
        if (body?.stream_options?.include_usage)
          send({ id, object: chunkObject, created, model, choices: [], usage });
        res.end('data: [DONE]\n\n');
        return;
      }
      const choice = chat
        ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop', logprobs: null }
        : { index: 0, text, finish_reason: 'stop', logprobs: null };
      return sendJson(
        res,
        200,
        reply.body ?? { id, object, created, model, choices: [choice], usage },
        reply.headers,
      );
    }
    if (url.pathname === '/v1/embeddings') {
      const inputs: unknown[] = Array.isArray(body?.input) ? body.input : [body?.input ?? ''];
      const data = inputs.map((_, index) => ({
        object: 'embedding',
        index,
        embedding: Array.from({ length: 8 }, (_v, i) => (index + 1) * 0.01 * (i + 1)),
      }));
      return sendJson(
        res,
        200,
        reply.body ?? {
          object: 'list',
          data,
          model,
          usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
        },
        reply.headers,
      );
    }
    return sendJson(
      res,
      404,
      errorBody(`Unknown path ${url.pathname}`, 'invalid_request_error', 'not_found'),
    );
  }

  private ruleReply(record: RecordedRequest): FakeReply | undefined {
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

  /** The built-in concurrency and rate limits (checked after rules). */
  private limitReply(): FakeReply | null {
    if (this.maxConcurrent !== null && this.working > this.maxConcurrent) {
      return {
        status: 429,
        body: errorBody('Too many concurrent requests', 'requests', 'concurrency_limit_exceeded'),
      };
    }
    if (this.rateLimit) {
      const now = Date.now();
      while (this.admitted.length > 0 && this.admitted[0]! <= now - this.rateLimit.windowMs)
        this.admitted.shift();
      if (this.admitted.length >= this.rateLimit.requests) {
        const resetMs = this.admitted[0]! + this.rateLimit.windowMs - now;
        return {
          status: 429,
          headers: {
            'retry-after': String(Math.max(1, Math.ceil(resetMs / 1000))),
            'x-ratelimit-remaining-requests': '0',
            'x-ratelimit-reset-requests': `${resetMs}ms`,
          },
          body: errorBody('Rate limit reached for requests', 'requests', 'rate_limit_exceeded'),
        };
      }
      this.admitted.push(now);
    }
    return null;
  }
}

function errorBody(message: string, type: string, code: string | null): unknown {
  return { error: { message, type, param: null, code } };
}

function modelObject(id: string): unknown {
  return { id, object: 'model', created: 1700000000, owned_by: 'fake-provider' };
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
