// Loaded into the gateway by bench/probes/rss.mjs (after bench/lib/gateway-preload.mjs): every 500 ms
// writes to $RSS_OUT process.memoryUsage(), the V8 heap spaces (committed and used) and the size of
// every WebAssembly memory the process created (PGlite's linear memory; undici's llhttp); in
// embedded mode, every 2 s, the in-process store's (LocalDb) keys by shape to `${RSS_OUT}.localdb`.
import { readdirSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname } from 'node:path';
import v8 from 'node:v8';

const memories = new Set();
const keep = (m) => {
  if (m instanceof WebAssembly.Memory) memories.add(new WeakRef(m));
};
const OrigMemory = WebAssembly.Memory;
WebAssembly.Memory = new Proxy(OrigMemory, {
  construct(target, args) {
    const m = Reflect.construct(target, args);
    keep(m);
    return m;
  },
});
const scan = (instance) => {
  for (const v of Object.values(instance?.exports ?? {})) keep(v);
};
const origInstantiate = WebAssembly.instantiate;
WebAssembly.instantiate = async function (...args) {
  const r = await origInstantiate.apply(this, args);
  scan(r.instance ?? r);
  return r;
};
const origStreaming = WebAssembly.instantiateStreaming;
if (origStreaming)
  WebAssembly.instantiateStreaming = async function (...args) {
    const r = await origStreaming.apply(this, args);
    scan(r.instance);
    return r;
  };
WebAssembly.Instance = new Proxy(WebAssembly.Instance, {
  construct(target, args) {
    const i = Reflect.construct(target, args);
    scan(i);
    return i;
  },
});

const out = process.env.RSS_OUT;
const MB = (n) => n / 1e6;
setInterval(() => {
  const m = process.memoryUsage();
  const spaces = {};
  for (const s of v8.getHeapSpaceStatistics()) {
    spaces[s.space_name.replace('_space', '')] = { size: MB(s.space_size), used: MB(s.space_used_size), phys: MB(s.physical_space_size) };
  }
  const wasm = [];
  for (const r of memories) {
    const mem = r.deref();
    if (mem) wasm.push(MB(mem.buffer.byteLength));
  }
  writeFileSync(
    out,
    JSON.stringify({
      rss: MB(m.rss),
      heapTotal: MB(m.heapTotal),
      heapUsed: MB(m.heapUsed),
      external: MB(m.external),
      arrayBuffers: MB(m.arrayBuffers),
      malloced: MB(v8.getHeapStatistics().malloced_memory),
      peakMalloced: MB(v8.getHeapStatistics().peak_malloced_memory),
      spaces,
      wasm,
    }),
  );
}, 500).unref();

// A heap snapshot on request: bench/probes/rss.mjs --snap creates `${RSS_OUT}.snap-<label>`; the
// gateway writes `${RSS_OUT}.<label>.heapsnapshot` and removes the request.
setInterval(() => {
  const dir = dirname(out);
  for (const name of readdirSync(dir)) {
    if (!name.startsWith(`${basename(out)}.snap-`)) continue;
    const label = name.slice(`${basename(out)}.snap-`.length);
    unlinkSync(`${dir}/${name}`);
    v8.writeHeapSnapshot(`${out}.${label}.heapsnapshot`);
  }
}, 300).unref();

// Embedded mode's in-process store (LocalDb): its sorted sets by key shape, written with each sample.
let localDb = null;
try {
  const { LocalDb } = await import(new URL('../../dist/src/state/local-db.js', import.meta.url).href);
  const zadd = LocalDb.prototype.zadd;
  LocalDb.prototype.zadd = function (...args) {
    localDb = this;
    return zadd.apply(this, args);
  };
} catch {
  // an older build
}
setInterval(() => {
  if (!localDb) return;
  const shapes = {};
  for (const [k, e] of localDb.data) {
    const shape = k.replace(/[0-9a-f]{8}-[0-9a-f-]{27}/g, '<id>').replace(/\d+/g, 'N');
    const s = (shapes[shape] ??= { keys: 0, zsetItems: 0, memberChars: 0, hashFields: 0 });
    s.keys++;
    if (e.value?.items) {
      s.zsetItems += e.value.items.length;
      for (const it of e.value.items) s.memberChars += it.member.length;
    } else if (e.value instanceof Map) s.hashFields += e.value.size;
  }
  writeFileSync(`${out}.localdb`, JSON.stringify(shapes, null, 1));
}, 2000).unref();
