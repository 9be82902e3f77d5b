import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AppConfig } from '../../config/app-config.js';
import { UpstreamGuardService } from '../../key-pool/services/upstream-guard.service.js';
import { ClientGone } from '../stages/client-gone.js';
import { UpstreamClient, classify, type UpstreamRequest } from './upstream-client.js';

// The upstream client's response body (a chunk queue on undici's dispatcher API, not a Node stream)
// against a real HTTP server: whole bodies past the high-water mark, chunk-by-chunk reads, aborts.
const BIG = 300 * 1024;
let server: Server;
let base: string;
const closed: string[] = [];

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
});

afterAll(async () => {
  await client.onApplicationShutdown();
  server.closeAllConnections();
  await new Promise((resolve) => server.close(resolve));
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
