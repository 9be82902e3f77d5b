// Layers of the gateway a CPU sample is attributed to (bench/profile.mjs): by the script URL of a
// JavaScript frame. Also the attribution of `perf record -g` samples (kernel and V8 internals
// included, which V8's own --cpu-prof can't see: its sampler counts wall time while busy, so
// preemption inside a syscall shows up as writev/writeUtf8String time).
import { execFileSync } from 'node:child_process';

/** Layer of one frame (null: not a layer of its own — node core, V8 builtins). First match wins. */
export const LAYERS = [
  ['pino (logging)', (u) => /node_modules\/(pino|pino-http|nestjs-pino|sonic-boom|fast-redact|@pinojs|thread-stream|on-exit-leak-free)\//.test(u) || /dist[^/]*\/src\/logging\//.test(u)],
  ['prom-client (metrics)', (u) => /node_modules\/(prom-client|@willsoto)\//.test(u) || /dist[^/]*\/src\/metrics\//.test(u) || /dist[^/]*\/src\/observability\/http-metrics/.test(u)],
  ['OpenTelemetry (spans)', (u) => /node_modules\/@opentelemetry\//.test(u) || /dist[^/]*\/src\/observability\/tracing/.test(u)],
  ['request observer / handler context', (u) => /dist[^/]*\/src\/observability\//.test(u)],
  ['auth (guard, credential cache)', (u) => /dist[^/]*\/src\/auth\//.test(u) || /node_modules\/(passport|passport-jwt|@nestjs\/passport|jsonwebtoken)\//.test(u)],
  ['rate limit', (u) => /dist[^/]*\/src\/rate-limit\//.test(u) || /node_modules\/@nestjs\/throttler\//.test(u)],
  ['admission / key pool / state (incl. ioredis)', (u) => /dist[^/]*\/src\/(relay\/admission|relay\/stages\/admit|relay\/stages\/lease-keeper|relay\/dispatcher|key-pool|adaptive|state|redis)/.test(u) || /node_modules\/(ioredis|@ioredis|redis-parser|denque|cluster-key-slot|@electric-sql)\//.test(u)],
  ['request log / accounting', (u) => /dist[^/]*\/src\/relay\/(stages\/account|infrastructure\/request-log)/.test(u) || /dist[^/]*\/src\/auth\/usage-recorder/.test(u) || /node_modules\/(typeorm|pg|pg-protocol)\//.test(u)],
  ['upstream client + undici', (u) => /dist[^/]*\/src\/relay\/infrastructure\/upstream-client/.test(u) || /node_modules\/undici\//.test(u) || /node:internal\/deps\/undici/.test(u) || u === 'node:internal/deps/undici/undici'],
  ['relay (controller, service, stages, domain)', (u) => /dist[^/]*\/src\/relay\//.test(u)],
  ['common (errors, validation, headers)', (u) => /dist[^/]*\/src\/common\//.test(u) || /node_modules\/(class-validator|class-transformer)\//.test(u)],
  ['app (create-app hooks, in-flight)', (u) => /dist[^/]*\/src\/app\//.test(u)],
  ['Nest (router, guards, interceptors, pipes, rxjs)', (u) => /node_modules\/(@nestjs\/core|@nestjs\/common|@nestjs\/platform-fastify|rxjs|reflect-metadata|iterare)\//.test(u)],
  ['Fastify (routing, hooks, reply)', (u) => /node_modules\/(fastify|find-my-way|avvio|@fastify|fast-json-stringify|light-my-request|fast-querystring|safe-regex2|toad-cache|process-warning|secure-json-parse|abstract-logging|rfdc)\//.test(u)],
  ['other src', (u) => /dist[^/]*\/src\//.test(u)],
  ['other npm', (u) => /node_modules\//.test(u)],
];
export const layerOf = (url) => {
  if (!url) return null;
  for (const [name, test] of LAYERS) if (test(url)) return name;
  return null;
};


const GC = /Scavenge|MarkCompact|Heap::|GCTracer|MinorMS|ConcurrentMarking|Sweeper|IncrementalMarking|MemoryAllocator|Evacuat/;
const COMPILE = /v8::internal::compiler::|v8::internal::maglev::|v8::internal::Compiler::|v8::internal::baseline::|Builtins_CompileLazy|OptimizingCompileDispatcher/;

/**
 * Reads `perf script` of a recording of the gateway's process and returns
 * { samples, main, byLayer: Map(layer → samples), byLayerTotal, threads }. Each main-thread sample
 * goes to the innermost JavaScript frame with a layer; frames below it (builtins, V8 runtime,
 * kernel) count for that layer. GC and the JIT compiler are separate rows wherever they run.
 */
export function perfAttribution(file) {
  const out = execFileSync('perf', ['script', '-i', file, '-F', 'tid,ip,sym'], { maxBuffer: 1 << 30, encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const blocks = out.split('\n\n');
  const tids = new Map();
  const parsed = [];
  for (const b of blocks) {
    const lines = b.split('\n').filter((l) => l.trim());
    if (lines.length === 0) continue;
    const tid = lines[0].trim();
    tids.set(tid, (tids.get(tid) ?? 0) + 1);
    parsed.push({ tid, kernel: lines.slice(1).some((l) => /^ffffffff/.test(l.trim())), frames: lines.slice(1).map((l) => l.trim().replace(/^[0-9a-f]+ /, '')) });
  }
  const main = [...tids.entries()].sort((a, b) => b[1] - a[1])[0]?.[0];
  const byLayer = new Map();
  const byLayerTotal = new Map();
  const inc = (m, k) => m.set(k, (m.get(k) ?? 0) + 1);
  for (const { tid, frames, kernel } of parsed) {
    let layer = null;
    const leaf = frames[0] ?? '';
    if (GC.test(leaf) || frames.some((f) => /Heap::CollectGarbage|ScavengerCollector|MarkCompactCollector|Heap::PerformGarbageCollection/.test(f))) layer = '(garbage collector)';
    else if (frames.some((f) => COMPILE.test(f) && !f.startsWith('JS:'))) layer = '(V8 JIT compiler)';
    else if (tid !== main) layer = '(other threads)';
    const seen = new Set();
    for (const f of frames) {
      if (!f.startsWith('JS:')) continue;
      const m = /(file:\/\/\S+|node:\S+|\/\S+\.m?js)(:\d+:\d+)?$/.exec(f);
      const l = m ? layerOf(m[1]) : null;
      if (l) {
        if (layer === null) layer = l;
        seen.add(l);
      }
    }
    if (layer === null) layer = frames.some((f) => f.startsWith('JS:')) ? 'node core (JS: http, streams, timers)' : kernel ? 'kernel/libuv outside JS (epoll, socket reads)' : 'node core (C++)';
    inc(byLayer, layer);
    for (const l of seen) inc(byLayerTotal, l);
  }
  return { samples: parsed.length, main, threads: tids, byLayer, byLayerTotal };
}
