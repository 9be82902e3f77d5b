// A minimal OpenAI-compatible upstream for benchmarks: instant, fixed-delay, and paced SSE.
//   - non-streaming: a fixed chat.completion after `delayMs` (0 = answered in the same tick);
//   - streaming (body.stream): `deltas` chunks, one every `paceMs` (first one at once), then the
//     usage chunk if asked for, then [DONE]. Request bodies may override per request with the
//     unknown fields `bench_deltas` / `bench_pace_ms` (Floodgate passes unknown fields through), or
//     with the headers `x-bench-deltas` / `x-bench-pace-ms` (for the Portkey peer, which drops
//     unknown body fields but forwards headers it is told to).
//   - `stats: true`: records when each completion request arrived and when its response finished
//     (hrtime, ms), served at GET /__bench/stats and cleared by POST /__bench/reset. The queue
//     section derives the dispatch hand-off time from them (slot freed → next request arrives).
import http from 'node:http';

const COMPLETION = JSON.stringify({
  id: 'chatcmpl-bench',
  object: 'chat.completion',
  created: 1763769600,
  model: 'bench-model',
  choices: [{ index: 0, message: { role: 'assistant', content: 'ok' }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
});
const MAX_EVENTS = 500_000;
const headerInt = (req, name) => {
  const v = Number(req.headers[name]);
  return req.headers[name] !== undefined && Number.isInteger(v) ? v : null;
};
const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

export async function startFakeUpstream({ delayMs = 0, deltas = 64, paceMs = 20, stats = false } = {}) {
  let arrivals = [];
  let finishes = [];
  // per finished request: finish − arrival (ms), the slot's time at the upstream
  let services = [];
  const server = http.createServer((req, res) => {
    if (req.url.startsWith('/__bench/')) {
      if (req.url === '/__bench/stats') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ arrivals, finishes, services }));
      } else {
        arrivals = [];
        finishes = [];
        services = [];
        res.writeHead(204);
        res.end();
      }
      req.resume();
      return;
    }
    if (stats && req.method === 'POST' && arrivals.length < MAX_EVENTS) {
      const arrived = nowMs();
      arrivals.push(arrived);
      res.once('finish', () => {
        const t = nowMs();
        finishes.push(t);
        services.push(t - arrived);
      });
    }
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      if (req.url.endsWith('/models')) {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ object: 'list', data: [{ id: 'bench-model', object: 'model' }] }));
        return;
      }
      let body = {};
      try {
        body = JSON.parse(Buffer.concat(chunks).toString() || '{}');
      } catch {
        // bench clients send JSON
      }
      if (body.stream) {
        const n = Number.isInteger(body.bench_deltas) ? body.bench_deltas : headerInt(req, 'x-bench-deltas') ?? deltas;
        const pace = Number.isInteger(body.bench_pace_ms) ? body.bench_pace_ms : headerInt(req, 'x-bench-pace-ms') ?? paceMs;
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        let i = 0;
        let timer = null;
        res.once('close', () => clearTimeout(timer));
        const send = () => {
          if (res.destroyed) return;
          if (i < n) {
            res.write(
              `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: `t${i} ` } }] })}\n\n`,
            );
            i++;
            timer = setTimeout(send, pace);
          } else {
            if (body.stream_options?.include_usage) {
              res.write(
                `data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 5, completion_tokens: n, total_tokens: 5 + n } })}\n\n`,
              );
            }
            res.end('data: [DONE]\n\n');
          }
        };
        if (delayMs > 0) timer = setTimeout(send, delayMs);
        else send();
        return;
      }
      const answer = () => {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(COMPLETION) });
        res.end(COMPLETION);
      };
      if (delayMs > 0) setTimeout(answer, delayMs);
      else answer();
    });
  });
  server.keepAliveTimeout = 60_000;
  server.headersTimeout = 65_000;
  server.requestTimeout = 0;
  server.maxConnections = 20_000;
  await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `http://127.0.0.1:${server.address().port}`;
  return {
    url,
    close: () =>
      new Promise((resolve) => {
        server.closeAllConnections?.();
        server.close(resolve);
      }),
  };
}
