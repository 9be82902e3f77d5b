// Redis commands and Redis CPU per relayed request (distributed mode, c=1): a quick probe.
import { Redis } from 'ioredis';
import { startGateway, configure, REDIS_URL, closeRedis } from './lib/gateway.mjs';
import { startFakeUpstream } from './lib/fake-upstream.mjs';
import { cleanupAll } from './lib/procs.mjs';
const up = await startFakeUpstream({});
const gw = await startGateway('distributed', {});
const { clientKey } = await configure(gw, up.url, { keys: 4 });
const r = new Redis(REDIS_URL);
const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] });
const one = () => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' }, body }).then((x) => x.text());
for (let i = 0; i < 200; i++) await one();
const stats = async () => { const t = await r.info('commandstats'); const m = {}; for (const l of t.split('\n')) { const x = /^cmdstat_(\w+):calls=(\d+),usec=(\d+)/.exec(l); if (x) m[x[1]] = [+x[2], +x[3]]; } return m; };
const cpu = async () => { const t = await r.info('cpu'); const g = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(t)[1]); return g('used_cpu_sys') + g('used_cpu_user'); };
await new Promise((res) => setTimeout(res, 1500));
const N = Number(process.env.N ?? 1000);
const s0 = await stats(); const c0 = await cpu();
for (let i = 0; i < N; i++) await one();
await new Promise((res) => setTimeout(res, 1500));
const s1 = await stats(); const c1 = await cpu();
let calls = 0, usec = 0; const rows = [];
for (const [k, [c, u]] of Object.entries(s1)) { const d = c - (s0[k]?.[0] ?? 0); const du = u - (s0[k]?.[1] ?? 0); if (d > 0 && k !== 'info') { rows.push([k, (d / N).toFixed(2), (du / N).toFixed(1)]); calls += d; usec += du; } }
rows.sort((a, b) => b[1] - a[1]);
console.table(rows);
console.log(`per request: ${(calls / N).toFixed(1)} commands, ${(usec / N).toFixed(1)} µs commandstats, ${((c1 - c0) * 1e6 / N).toFixed(0)} µs Redis process CPU (incl. 1.5 s idle)`);
r.disconnect(); await gw.stop(); await up.close?.(); closeRedis(); cleanupAll(); process.exit(0);
