import net from 'node:net';
import type { Role } from '../../src/common/principal.js';
import { createUserWithKey, type UserWithKey } from '../support/auth.js';

/** Rate limits high enough that a matrix of a few hundred calls per key never meets them. */
export const NO_CLIENT_LIMITS: Record<string, string> = {
  RATE_LIMIT_KEY_RPM: '1000000',
  RATE_LIMIT_USER_RPM: '1000000',
  RATE_LIMIT_IP_RPM: '1000000',
};

export const ROLES: Role[] = ['admin', 'developer', 'user', 'viewer'];

export interface CallResult {
  status: number;
  headers: Headers;
  /** Parsed JSON when the body is JSON, else the text. */
  body: any;
  text: string;
}

/**
 * fetch that never hangs on a server-sent-event stream: for `text/event-stream` it reads the first
 * chunk (bounded by `sseMs`) and then cancels, so a status stream can sit in a matrix.
 */
export async function call(
  url: string,
  init: {
    method?: string;
    headers?: Record<string, string>;
    body?: unknown;
    redirect?: 'follow' | 'manual' | 'error';
  } = {},
  sseMs = 1500,
): Promise<CallResult> {
  const controller = new AbortController();
  const json = init.body !== undefined && typeof init.body !== 'string';
  const res = await fetch(url, {
    method: init.method ?? 'GET',
    headers: { ...(json ? { 'content-type': 'application/json' } : {}), ...init.headers },
    body: init.body === undefined ? undefined : json ? JSON.stringify(init.body) : (init.body as string),
    signal: controller.signal,
    redirect: init.redirect ?? 'manual',
  });
  let text = '';
  if ((res.headers.get('content-type') ?? '').startsWith('text/event-stream')) {
    const reader = res.body!.getReader();
    const timer = setTimeout(() => controller.abort(), sseMs);
    try {
      const { value } = await reader.read();
      text = value ? Buffer.from(value).toString('utf8') : '';
    } catch {
      // aborted by the timer: keep what we have
    } finally {
      clearTimeout(timer);
      controller.abort();
    }
  } else {
    text = await res.text();
  }
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON
  }
  return { status: res.status, headers: res.headers, body, text };
}

/** One user per role with an API key of that role, created sequentially (PGlite dislikes concurrency). */
export async function usersByRole(gw: { url: string }, adminKey: string): Promise<Record<Role, UserWithKey>> {
  const out = {} as Record<Role, UserWithKey>;
  for (const role of ROLES) out[role] = await createUserWithKey(gw, adminKey, role);
  return out;
}

export interface RawResponse {
  /** Everything the server wrote, as latin1 (bytes preserved). */
  raw: string;
  statusLine: string;
  status: number;
  /** Header lines exactly as received (name: value). */
  headerLines: string[];
  headers: Map<string, string[]>;
  body: string;
}

/**
 * Sends bytes exactly as given (no client-side header validation, unlike fetch/undici) and returns
 * the first response, parsed by hand. Needed for CRLF, obs-text and absolute-form request tests.
 */
export function rawHttp(port: number, request: string | Buffer, timeoutMs = 5000): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), timeoutMs);
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const raw = Buffer.concat(chunks).toString('latin1');
      // Stop at the end of the first response when its length is known.
      const head = raw.indexOf('\r\n\r\n');
      if (head !== -1) {
        const m = /\r\ncontent-length:\s*(\d+)/i.exec(raw.slice(0, head));
        if (m && raw.length >= head + 4 + Number(m[1])) socket.end();
      }
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      if (chunks.length === 0) reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const raw = Buffer.concat(chunks).toString('latin1');
      const head = raw.indexOf('\r\n\r\n');
      const headText = head === -1 ? raw : raw.slice(0, head);
      const [statusLine = '', ...headerLines] = headText.split('\r\n');
      const headers = new Map<string, string[]>();
      for (const line of headerLines) {
        const i = line.indexOf(':');
        const name = line.slice(0, i).trim().toLowerCase();
        headers.set(name, [...(headers.get(name) ?? []), line.slice(i + 1).trim()]);
      }
      resolve({
        raw,
        statusLine,
        status: Number(statusLine.split(' ')[1] ?? 0),
        headerLines,
        headers,
        body: head === -1 ? '' : raw.slice(head + 4),
      });
    });
    socket.write(request);
  });
}

/** A loopback TCP listener that only counts connections: it must see none when an address is refused. */
export class Sentinel {
  connections = 0;
  port = 0;
  private readonly servers: net.Server[] = [];
  private readonly sockets = new Set<net.Socket>();

  private make(): net.Server {
    return net.createServer((socket) => {
      this.connections++;
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
      socket.on('error', () => undefined);
      socket.end('HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok');
    });
  }

  /** Listens on 127.0.0.1 and, when the host has IPv6 loopback, on [::1] with the same port. */
  async start(): Promise<void> {
    const v4 = this.make();
    await new Promise<void>((resolve) => v4.listen(0, '127.0.0.1', resolve));
    this.servers.push(v4);
    this.port = (v4.address() as net.AddressInfo).port;
    const v6 = this.make();
    await new Promise<void>((resolve) => {
      v6.once('error', () => resolve());
      v6.listen(this.port, '::1', () => {
        this.servers.push(v6);
        resolve();
      });
    });
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await Promise.all(this.servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
  }
}

/** Every operation in an OpenAPI document as `METHOD /path`. */
export function documentedOperations(doc: { paths: Record<string, Record<string, unknown>> }): string[] {
  const methods = new Set(['get', 'post', 'put', 'patch', 'delete', 'head', 'options']);
  return Object.entries(doc.paths)
    .flatMap(([path, ops]) =>
      Object.keys(ops)
        .filter((m) => methods.has(m))
        .map((m) => `${m.toUpperCase()} ${path}`),
    )
    .sort();
}
