// Probe (not part of `npm run bench`): RSS and V8 heap spaces of one gateway idle, after a 10 s load at
// 64 connections, 10 s later, and after a forced GC. `npm run build && node bench/probes/memory.mjs [embedded|distributed]`
// (LOAD_S=seconds). Used to find what the RSS after a burst is made of (docs/performance.md).
import { startGateway, configure, closeRedis } from '../lib/gateway.mjs';
import { startFakeUpstream } from '../lib/fake-upstream.mjs';
import { cleanupAll } from '../lib/procs.mjs';
import { readFileSync } from 'node:fs';
import { Agent, request } from 'undici';
const mode = process.argv[2] ?? 'distributed';
const out = `/tmp/mem-${mode}.json`;
const up = await startFakeUpstream({});
const gw = await startGateway(mode, { env: { MEM_OUT: out, ...(process.env.XENV ? JSON.parse(process.env.XENV) : {}) }, nodeFlags: ['--import', new URL('./memory-preload.mjs', import.meta.url).pathname] });
const { clientKey } = await configure(gw, up.url);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const show = (label) => { const m = JSON.parse(readFileSync(out, 'utf8')); console.log(label.padEnd(14), Object.entries(m).map(([k, v]) => `${k}=${v.toFixed(1)}`).join(' ')); };
await sleep(8000); show("idle");
const agent = new Agent({ connections: 64 });
const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] });
let n = 0; const end = Date.now() + Number(process.env.LOAD_S ?? 10) * 1000;
await Promise.all(Array.from({ length: 64 }, async () => { while (Date.now() < end) { const r = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', dispatcher: agent, headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' }, body }); await r.body.text(); n++; } }));
show(`load done n=${n}`);
await sleep(10000); show('after 10s');
await gw.gc(); await sleep(500); show('after gc');
await agent.close(); await gw.stop(); closeRedis(); cleanupAll(); process.exit(0);
