import { Agent, request, type Dispatcher } from 'undici';

export interface SendResult {
  /** The receiver's status; null when no answer came (connect error, timeout, refused address). */
  httpStatus: number | null;
  error: string | null;
  durationMs: number;
}

/**
 * POSTs one delivery. The agent's connector is the SSRF guard's (every address actually dialled is
 * judged again: DNS rebinding cannot reach a forbidden address); redirects are not followed; the
 * whole attempt is bounded by `timeoutMs`; at most 4 KiB of the answer is read.
 */
export class WebhookSender {
  private readonly agent: Agent;

  constructor(
    connect: Agent.Options['connect'],
    private readonly timeoutMs: number,
  ) {
    this.agent = new Agent({
      connect,
      headersTimeout: timeoutMs,
      bodyTimeout: timeoutMs,
      connections: 16,
      keepAliveTimeout: 4000,
    });
  }

  async send(url: string, body: string, headers: Record<string, string>): Promise<SendResult> {
    const started = performance.now();
    const signal = AbortSignal.timeout(this.timeoutMs);
    try {
      const res: Dispatcher.ResponseData = await request(url, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json', 'user-agent': 'Floodgate-Webhooks/1', ...headers },
        dispatcher: this.agent,
        signal,
      });
      let text = '';
      for await (const chunk of res.body) {
        if (text.length < 4096) text += (chunk as Buffer).toString('utf8');
      }
      const ok = res.statusCode >= 200 && res.statusCode < 300;
      return {
        httpStatus: res.statusCode,
        error: ok ? null : `HTTP ${res.statusCode}${text ? `: ${oneLine(text)}` : ''}`.slice(0, 500),
        durationMs: Math.round(performance.now() - started),
      };
    } catch (err) {
      return {
        httpStatus: null,
        error: describe(err, signal.aborted, this.timeoutMs),
        durationMs: Math.round(performance.now() - started),
      };
    }
  }

  async close(): Promise<void> {
    await this.agent.close().catch(() => undefined);
  }
}

function oneLine(text: string): string {
  return text.replace(/\s+/g, ' ').trim().slice(0, 200);
}

function describe(err: unknown, timedOut: boolean, timeoutMs: number): string {
  if (timedOut) return `timed out after ${timeoutMs} ms`;
  const e = err as { code?: string; message?: string; cause?: { code?: string; message?: string } };
  const inner = e.cause ?? e;
  const code = inner.code ?? e.code;
  const message = inner.message ?? e.message ?? String(err);
  return (code ? `${code}: ${message}` : message).slice(0, 500);
}
