// Preload for bench/probes/c1-wall.mjs (bench only; never loaded in production): wall-clock marks of
// each request at concurrency 1, from Node's, undici's and Fastify's diagnostics channels plus a few
// patched prototypes (socket writes, ioredis sendCommand, the relay's handle/respond, the guards),
// written as JSON to $C1_WALL_OUT at exit. At c=1 only one request is in flight, so the marks of
// "the current request" are plain module variables.
import dc from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import http from 'node:http';

const out = process.env.C1_WALL_OUT;
const dist = process.env.C1_WALL_DIST; // absolute path of the build's src/ directory
// process.hrtime (CLOCK_MONOTONIC) in µs: the same clock as a --cpu-prof profile's timestamps
const now = () => Number(process.hrtime.bigint()) / 1000;
const rows = [];
let cur = null;
let lastEnd = 0;
dc.subscribe('http.server.request.start', ({ socket }) => {
  cur = { start: now(), prevFinish: lastEnd, redis: [], socket };
});
// the response's bytes handed to the kernel (what the client waits for)
import net from 'node:net';
for (const m of ['_writev', '_write']) {
  const orig = net.Socket.prototype[m];
  net.Socket.prototype[m] = function (...a) {
    if (cur && this === cur.socket && cur.sockWrite === undefined) {
      // the response's write itself (the syscall; the client may run before it returns)
      const c = cur;
      c.sockWrite = now();
      c.sockBytes = m === '_writev' ? a[0].reduce((n, w) => n + Buffer.byteLength(w.chunk, w.encoding), 0) : Buffer.byteLength(a[0], a[1]);
      c.sockChunks = m === '_writev' ? a[0].length : 1;
      const ret = orig.apply(this, a);
      c.sockWritten = now();
      return ret;
    }
    if (cur && process.env.C1_WALL_WRITES) (cur.writes ??= []).push([now(), this.remotePort]);
    if (cur && this !== cur.socket && cur.upCreate !== undefined && cur.upWrite === undefined) {
      // the upstream request's bytes: the write itself, then what still runs before the loop is free
      const c = cur;
      c.upWrite = now();
      c.upBytes = m === '_writev' ? a[0].reduce((n, w) => n + Buffer.byteLength(w.chunk, w.encoding), 0) : Buffer.byteLength(a[0], a[1]);
      c.upChunks = m === '_writev' ? a[0].length : 1;
      const ret = orig.apply(this, a);
      c.upWritten = now();
      setImmediate(() => { c.upFree = now(); });
      return ret;
    }
    return orig.apply(this, a);
  };
}
const ends = http.ServerResponse.prototype.end;
http.ServerResponse.prototype.end = function (...a) {
  if (cur) cur.endCall = now();
  return ends.apply(this, a);
};
dc.subscribe('http.server.response.finish', () => {
  if (!cur) return;
  cur.finish = now();
  lastEnd = cur.finish;
  const c = cur;
  // what runs after the response (release, account…) until the loop is next idle
  setImmediate(() => { c.afterIdle = now(); });
  delete c.socket;
  rows.push(c);
});
dc.subscribe('fastify.initialization', ({ fastify }) => {
  fastify.addHook('onRequest', (req, _reply, done) => {
    if (cur) {
      cur.fOnRequest = now();
      const c = cur;
      req.raw.once('end', () => { c.bodyEnd = now(); });
    }
    done();
  });
  fastify.addHook('preParsing', (_req, _reply, payload, done) => { if (cur) cur.fPreParsing = now(); done(null, payload); });
  fastify.addHook('preValidation', (_req, _reply, done) => { if (cur) cur.fPreValidation = now(); done(); });
  fastify.addHook('preHandler', (_req, _reply, done) => { if (cur) cur.fPreHandler = now(); done(); });
});
dc.subscribe('undici:request:create', () => { if (cur) cur.upCreate = now(); });
dc.subscribe('undici:client:sendHeaders', () => { if (cur) cur.upSent = now(); });
dc.subscribe('undici:request:headers', () => { if (cur) cur.upHeaders = now(); });
dc.subscribe('undici:request:trailers', () => { if (cur) cur.upDone = now(); });
const require = createRequire(new URL('../../package.json', import.meta.url));
const { Redis } = require('ioredis');
const send = Redis.prototype.sendCommand;
Redis.prototype.sendCommand = function (command, stream) {
  if (cur && command && command.promise) {
    const r = { name: command.name, at: now() };
    cur.redis.push(r);
    command.promise.then(() => { r.done = now(); }, () => { r.done = now(); });
  }
  return send.call(this, command, stream);
};
if (dist) {
  const { RelayService } = await import(`${dist}/relay/relay.service.js`);
  const handle = RelayService.prototype.handle;
  RelayService.prototype.handle = function (...a) {
    if (cur) cur.handle = now();
    return handle.apply(this, a);
  };
  dc.subscribe('tracing:fastify.request.handler:start', () => { if (cur) cur.fHandler = now(); });
  const wrap = async (file, cls, method, before, after) => {
    const m = await import(`${dist}/${file}`);
    const orig = m[cls].prototype[method];
    m[cls].prototype[method] = function (...a) {
      if (cur) cur[before] = now();
      const r = orig.apply(this, a);
      if (cur) cur[after] = now();
      return r;
    };
  };
  await wrap('auth/auth.guard.js', 'AuthGuard', 'canActivate', 'authIn', 'authOut');
  await wrap('rate-limit/rate-limit.guard.js', 'RateLimitGuard', 'canActivate', 'rlIn', 'rlOut');
  await wrap('observability/handler-context.guard.js', 'HandlerContextGuard', 'canActivate', 'hcIn', 'hcOut');
  // the relay's stages between handle and the upstream request: admission, then the send stage
  await wrap('relay/stages/admit.stage.js', 'AdmitStage', 'admit', 'admitIn', 'admitRet');
  await wrap('relay/stages/send.stage.js', 'SendStage', 'deliver', 'deliverIn', 'deliverRet');
  const { JsonResponder } = await import(`${dist}/relay/stages/json-responder.js`);
  const respond = JsonResponder.prototype.respond;
  JsonResponder.prototype.respond = function (...a) {
    if (cur) cur.respond = now();
    return respond.apply(this, a);
  };
}
process.on('exit', () => { if (out) writeFileSync(out, JSON.stringify(rows)); });
