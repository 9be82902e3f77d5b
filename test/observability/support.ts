/** Helpers for the observability tests: Prometheus text parsing and a tiny SSE reader. */

export interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE_LINE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+\d+)?$/;
const LABEL = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g;

/** Parses Prometheus text exposition (0.0.4) into samples. */
export function parseExposition(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = SAMPLE_LINE.exec(line);
    if (!m) throw new Error(`unparseable exposition line: ${line}`);
    const labels: Record<string, string> = {};
    for (const l of (m[2] ?? '').matchAll(LABEL))
      labels[l[1]!] = l[2]!.replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
    const raw = m[3]!;
    out.push({
      name: m[1]!,
      labels,
      value: raw === '+Inf' ? Infinity : raw === '-Inf' ? -Infinity : Number(raw),
    });
  }
  return out;
}

/** The value of the sample with exactly these labels (others must match too when given); NaN when absent. */
export function sampleValue(samples: Sample[], name: string, labels: Record<string, string>): number {
  const keys = Object.keys(labels);
  const found = samples.filter(
    (s) =>
      s.name === name &&
      keys.every((k) => s.labels[k] === labels[k]) &&
      (keys.length > 0 || Object.keys(s.labels).length === 0),
  );
  if (found.length === 0) return NaN;
  return found.reduce((sum, s) => sum + s.value, 0);
}

export interface SseFrame {
  event: string;
  id: string | undefined;
  data: string;
  comment: boolean;
}

/** An SSE reader over a fetch Response that can be awaited for a condition several times. */
export class SseReader {
  readonly frames: SseFrame[] = [];
  raw = '';
  ended = false;
  private readonly reader: ReadableStreamDefaultReader<Uint8Array>;
  private readonly decoder = new TextDecoder();
  private buffer = '';
  private pending: ReturnType<ReadableStreamDefaultReader<Uint8Array>['read']> | null = null;

  constructor(res: Response) {
    this.reader = res.body!.getReader();
  }

  /** Reads until `done(frames)` holds, the stream ends, or the timeout (which throws). */
  async until(done: (frames: SseFrame[]) => boolean, timeoutMs: number): Promise<this> {
    const deadline = Date.now() + timeoutMs;
    while (!done(this.frames) && !this.ended) {
      const left = deadline - Date.now();
      if (left <= 0)
        throw new Error(`SSE: condition not met within ${timeoutMs} ms; got:\n${this.raw.slice(-2000)}`);
      this.pending ??= this.reader.read();
      let timer: NodeJS.Timeout | undefined;
      const chunk = await Promise.race([
        this.pending,
        new Promise<'timeout'>((resolve) => (timer = setTimeout(() => resolve('timeout'), left))),
      ]);
      clearTimeout(timer);
      if (chunk === 'timeout') continue;
      this.pending = null;
      if (chunk.done) {
        this.ended = true;
        break;
      }
      this.push(this.decoder.decode(chunk.value, { stream: true }));
    }
    return this;
  }

  async cancel(): Promise<void> {
    await this.reader.cancel().catch(() => undefined);
  }

  private push(text: string): void {
    this.raw += text;
    this.buffer += text;
    let idx: number;
    while ((idx = this.buffer.indexOf('\n\n')) >= 0) {
      const block = this.buffer.slice(0, idx);
      this.buffer = this.buffer.slice(idx + 2);
      const frame: SseFrame = { event: 'message', id: undefined, data: '', comment: false };
      const data: string[] = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) frame.comment = true;
        else if (line.startsWith('event:')) frame.event = line.slice(6).trim();
        else if (line.startsWith('id:')) frame.id = line.slice(3).trim();
        else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
      }
      frame.data = data.join('\n');
      this.frames.push(frame);
    }
  }
}

/** Reads SSE frames until `done(frames)` or the timeout. */
export async function readSse(
  res: Response,
  done: (frames: SseFrame[]) => boolean,
  timeoutMs: number,
): Promise<SseReader> {
  return new SseReader(res).until(done, timeoutMs);
}
