// Loaded into the gateway by bench/probes/memory.mjs: writes process.memoryUsage() and the V8 heap
// space sizes to $MEM_OUT every 500 ms.
import '../lib/gateway-preload.mjs';
import { writeFileSync } from 'node:fs';
import v8 from 'node:v8';
const out = process.env.MEM_OUT;
setInterval(() => { const m = process.memoryUsage(); const sp = Object.fromEntries(v8.getHeapSpaceStatistics().map((s) => [s.space_name.replace('_space',''), s.space_size / 1e6])); writeFileSync(out, JSON.stringify({ rss: m.rss/1e6, heapTotal: m.heapTotal/1e6, heapUsed: m.heapUsed/1e6, ext: m.external/1e6, ...sp })); }, 500).unref();
