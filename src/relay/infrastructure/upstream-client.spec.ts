import { createServer, type Server } from 'node:http';
import {
  createServer as createTcpServer,
  type AddressInfo,
  type Server as TcpServer,
  type Socket,
} from 'node:net';
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest';
import type { AppConfig } from '../../config/app-config.js';
import { UpstreamGuardService } from '../../key-pool/services/upstream-guard.service.js';
import { ClientGone } from '../stages/client-gone.js';
import { MAX_POOLS, UpstreamClient, classify, poolKey, type UpstreamRequest } from './upstream-client.js';

// The upstream client's response body (a chunk queue on undici's dispatcher API, not a Node stream)
// against a real HTTP server: whole bodies past the high-water mark, chunk-by-chunk reads, aborts.
const BIG = 300 * 1024;
let server: Server;
let base: string;
const closed: string[] = [];
/** Accepts TCP and never answers: a TLS handshake to it never completes (connect timeout). */
let silent: TcpServer;
let silentBase: string;
const silentSockets: Socket[] = [];

beforeAll(async () => {
  server = createServer((req, res) => {
    req.resume();
    res.on('close', () => closed.push(req.url ?? ''));
    if (req.url === '/v1/big') {
      res.writeHead(200, { 'content-type': 'application/json' });
      const block = 'x'.repeat(1024);
      let sent = 0;
      const pump = () => {
        while (sent < BIG) {
          sent += block.length;
          if (!res.write(block)) return void res.once('drain', pump);
        }
        res.end();
      };
      pump();
    } else if (req.url === '/v1/hang') {
      // accepts the request, never answers
    } else if (req.url === '/v1/slow') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: first\n\n');
      // never ends on its own: the client aborts
    } else {
      res.setHeader('set-cookie', ['a=1', 'b=2']);
      res.end(JSON.stringify({ ok: true }));
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  silent = createTcpServer((socket) => {
    silentSockets.push(socket);
    socket.resume();
  });
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  silentBase = `https://127.0.0.1:${(silent.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  await client.onApplicationShutdown();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
  silentSockets.forEach((s) => s.destroy());
  await new Promise((resolve) => silent.close(resolve));
});

const guard = new UpstreamGuardService({ upstream: { allowPrivate: true } } as unknown as AppConfig);
const client = new UpstreamClient(guard);
const request = (path: string, signal = new ClientGone()): UpstreamRequest => ({
  baseUrl: base,
  path,
  method: 'POST',
  headers: { 'content-type': 'application/json' },
  body: '{}',
  signal,
  timeoutMs: 5000,
});

describe('UpstreamClient', () => {
  it('reads a whole body far past the high-water mark with text()', async () => {
    const response = await client.send(request('/big'));
    expect(response.statusCode).toBe(200);
    const text = await response.body.text();
    expect(text.length).toBe(BIG);
  });

  it('reads a whole body chunk by chunk, the socket paused and resumed as the reader goes', async () => {
    const response = await client.send(request('/big'));
    // Let undici fill the queue past the mark (the socket pauses) before reading.
    await new Promise((resolve) => setTimeout(resolve, 50));
    let size = 0;
    for await (const chunk of response.body) size += chunk.length;
    expect(size).toBe(BIG);
  });

  it('parses headers as undici does: lower-case names, repeated ones as arrays', async () => {
    const response = await client.send(request('/small'));
    expect(response.headers['content-length']).toBe('11');
    expect(response.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(await response.body.text()).toBe('{"ok":true}');
  });

  it('textNow: the whole body without a promise once it is all in, null while more is to come', async () => {
    const small = await client.send(request('/small'));
    await expect.poll(() => small.body.textNow!() ?? null).toBe('{"ok":true}');
    // read once: the body is drained
    expect(small.body.textNow!()).toBe('');
    const open = await client.send(request('/slow'));
    await expect.poll(() => open.body.hasChunk).toBe(true);
    expect(open.body.textNow!()).toBeNull();
    // still readable chunk by chunk after a textNow that found it incomplete
    for await (const chunk of open.body) {
      expect(chunk.toString()).toBe('data: first\n\n');
      break;
    }
  });

  it('the client going aborts a body being read: the reader gets an abort, the upstream connection closes', async () => {
    const controller = new ClientGone();
    const response = await client.send(request('/slow', controller));
    const chunks: string[] = [];
    const read = (async () => {
      for await (const chunk of response.body) {
        chunks.push(chunk.toString());
        controller.abort();
      }
    })();
    const err = await read.then(
      () => null,
      (e: unknown) => e,
    );
    expect(chunks).toEqual(['data: first\n\n']);
    expect(classify(err).kind).toBe('aborted');
    await expect.poll(() => closed.includes('/v1/slow')).toBe(true);
  });

  it('a client already gone refuses before anything is sent; an unreachable upstream is a connect failure', async () => {
    const gone = new ClientGone();
    gone.abort();
    await expect(client.send(request('/small', gone)).catch((e: unknown) => classify(e).kind)).resolves.toBe(
      'aborted',
    );
    const unreachable = { ...request('/small'), baseUrl: 'http://127.0.0.1:1/v1' };
    await expect(client.send(unreachable).catch((e: unknown) => classify(e).kind)).resolves.toBe('connect');
  });

  it('a reader that stops early ends the request', async () => {
    const response = await client.send(request('/slow'));
    for await (const chunk of response.body) {
      expect(chunk.toString()).toBe('data: first\n\n');
      break;
    }
    await expect.poll(() => closed.filter((u) => u === '/v1/slow').length).toBe(2);
  });
});

describe('UpstreamClient per-target timeouts', () => {
  // Each case would take timeoutMs (30 s) or the default connect timeout (10 s) without its override:
  // the 5 s test timeout fails it.
  const slowDefault = (path: string, timeouts: UpstreamRequest['timeouts']): UpstreamRequest => ({
    ...request(path),
    timeoutMs: 30_000,
    timeouts,
  });
  const failure = (p: Promise<unknown>) =>
    p.then(
      () => null,
      (e: unknown) => classify(e).kind,
    );

  it('firstByteMs: no response headers in time is a timeout', async () => {
    const started = performance.now();
    expect(await failure(client.send(slowDefault('/hang', { firstByteMs: 200 })))).toBe('timeout');
    expect(performance.now() - started).toBeLessThan(4000);
  });

  it('totalMs before the headers: the send rejects with a timeout', async () => {
    expect(await failure(client.send(slowDefault('/hang', { totalMs: 200 })))).toBe('timeout');
  });

  it('totalMs after the headers: the body read throws a timeout, the upstream connection closes', async () => {
    const before = closed.filter((u) => u === '/v1/slow').length;
    const response = await client.send(slowDefault('/slow', { totalMs: 300 }));
    const chunks: string[] = [];
    const read = (async () => {
      for await (const chunk of response.body) chunks.push(chunk.toString());
    })();
    expect(await failure(read)).toBe('timeout');
    expect(chunks).toEqual(['data: first\n\n']);
    await expect.poll(() => closed.filter((u) => u === '/v1/slow').length).toBe(before + 1);
  });

  it('totalMs: the timer is cleared when the exchange ends, and none is set without totalMs', async () => {
    const set = vi.spyOn(globalThis, 'setTimeout');
    const clear = vi.spyOn(globalThis, 'clearTimeout');
    try {
      const response = await client.send(slowDefault('/small', { totalMs: 4321 }));
      expect(await response.body.text()).toBe('{"ok":true}');
      const mine = set.mock.results.filter((_, i) => set.mock.calls[i]![1] === 4321);
      expect(mine).toHaveLength(1);
      expect(clear.mock.calls.some(([handle]) => handle === mine[0]!.value)).toBe(true);
      set.mockClear();
      const plain = await client.send(slowDefault('/small', { firstByteMs: 4321 }));
      await plain.body.text();
      expect(set.mock.calls.filter((c) => c[1] === 4321)).toHaveLength(0);
    } finally {
      set.mockRestore();
      clear.mockRestore();
    }
  });

  it('connectMs: a TLS handshake that never completes is a timeout', async () => {
    const started = performance.now();
    expect(
      await failure(client.send({ ...slowDefault('/small', { connectMs: 300 }), baseUrl: silentBase })),
    ).toBe('timeout');
    expect(performance.now() - started).toBeLessThan(4000);
  });

  it('pools are per origin and connect timeout, the default keyed by the origin alone, bounded', async () => {
    expect(poolKey('http://a:1', 10_000)).toBe('http://a:1');
    expect(poolKey('http://a:1', 2500)).toBe('http://a:1 2500');
    const own = new UpstreamClient(guard);
    const gone = new ClientGone();
    gone.abort();
    const send = (connectMs?: number) =>
      own.send({ ...request('/small', gone), timeouts: { connectMs } }).catch(() => undefined);
    await send();
    await send(10_000);
    await send(undefined);
    expect(own.poolCount).toBe(1);
    await send(2500);
    await send(2500);
    expect(own.poolCount).toBe(2);
    for (let i = 1; i <= MAX_POOLS + 10; i++) await send(i);
    expect(own.poolCount).toBe(MAX_POOLS);
    await own.onApplicationShutdown();
  });
});

describe('ClientGone', () => {
  it('aborts its AbortSignal whether it was asked for before or after the client went', () => {
    const early = new ClientGone();
    const signal = early.signal;
    expect(signal.aborted).toBe(false);
    early.abort();
    expect(signal.aborted).toBe(true);
    const late = new ClientGone();
    late.abort();
    expect(late.aborted).toBe(true);
    expect(late.signal.aborted).toBe(true);
  });

  it('calls its listener once, and not after it is removed', () => {
    const gone = new ClientGone();
    let calls = 0;
    const listener = () => calls++;
    gone.onAbort(listener);
    gone.offAbort(listener);
    gone.abort();
    expect(calls).toBe(0);
    const again = new ClientGone();
    again.onAbort(listener);
    again.abort();
    again.abort();
    expect(calls).toBe(1);
  });
});
