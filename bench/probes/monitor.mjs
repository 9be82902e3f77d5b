// Probe (not part of `npm run bench`): the Redis MONITOR trace of ONE uncontended relayed request in
// distributed mode (which scripts, which keys). `npm run build && node bench/probes/monitor.mjs`
import { Redis } from 'ioredis';
import { startGateway, configure, REDIS_URL, closeRedis } from '../lib/gateway.mjs';
import { startFakeUpstream } from '../lib/fake-upstream.mjs';
import { cleanupAll } from '../lib/procs.mjs';
const up = await startFakeUpstream({});
const gw = await startGateway('distributed', {});
const { clientKey } = await configure(gw, up.url, { keys: 4 });
const body = JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] });
const one = () => fetch(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json' }, body }).then((x) => x.text());
for (let i = 0; i < 20; i++) await one();
await new Promise((res) => setTimeout(res, 1500));
const m = await new Redis(REDIS_URL).monitor();
const lines = [];
m.on('monitor', (time, args) => lines.push(args.slice(0, 3).map(String).map(s=>s.slice(0,60)).join(' ') + (args[0].toLowerCase()==='evalsha' ? ` keys=${args[2]} ${args.slice(3,3+Number(args[2])).join(' ').slice(0,300)}`:'')));
await one();
await new Promise((res) => setTimeout(res, 1200));
console.log(lines.join('\n'));
m.disconnect(); await gw.stop(); closeRedis(); cleanupAll(); process.exit(0);
