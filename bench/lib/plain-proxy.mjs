// The practical floor: a minimal node:http + undici pass-through proxy (no auth, no limits, no
// logging). Streams pass through chunk by chunk. The pool has no connection cap (Floodgate's has 256
// per upstream origin), so the floor is the machine, not a pool size.
// `maxConcurrent`: the contended section's reference — at most that many upstream requests at once,
// the others waiting in FIFO order; a slot passes to the next waiter the moment its response has
// been read (what a gateway with a perfect in-process hand-off would do).
import http from 'node:http';
import { Pool } from 'undici';

export async function startPlainProxy(upstreamUrl, { maxConcurrent = 0 } = {}) {
  const pool = new Pool(upstreamUrl, { connections: null, keepAliveTimeout: 60_000 });
  let inFlight = 0;
  const waiting = [];
  const acquire = () => {
    if (!maxConcurrent || inFlight < maxConcurrent) {
      inFlight++;
      return null;
    }
    return new Promise((resolve) => waiting.push(resolve));
  };
  const release = () => {
    if (!maxConcurrent) return;
    const next = waiting.shift();
    if (next) next();
    else inFlight--;
  };
  const server = http.createServer(async (req, res) => {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const slot = acquire();
    if (slot) await slot;
    let released = false;
    const done = () => {
      if (!released) release();
      released = true;
    };
    try {
      const r = await pool.request({
        path: req.url,
        method: req.method,
        headers: { 'content-type': 'application/json', authorization: 'Bearer sk-plain' },
        body: Buffer.concat(chunks),
      });
      res.writeHead(r.statusCode, { 'content-type': r.headers['content-type'] ?? 'application/json' });
      for await (const c of r.body) res.write(c);
      done();
      res.end();
    } catch {
      done();
      res.writeHead(502);
      res.end();
    }
  });
  server.keepAliveTimeout = 60_000;
  server.requestTimeout = 0;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: async () => {
      server.closeAllConnections?.();
      await new Promise((resolve) => server.close(resolve));
      await pool.close();
    },
  };
}
