// Probe (not part of `npm run bench`): what one `redis.call` and a few Lua idioms cost inside a
// script, on a private redis-server: each case runs 100 (or 1000) times in one EVALSHA with 92
// arguments (about a relayed request's admission), SLOWLOG median of 1,000 calls after 200 of
// warm-up. `node bench/probes/lua-call-cost.mjs`
import { startPrivateRedis } from '../sections/redis-cost.mjs';
import { closeRedis } from '../lib/gateway.mjs';
import { cleanupAll } from '../lib/procs.mjs';

const cases = {
  'empty script (92 args)': 'return 0',
  '100 × HGET (missing field)': "for i=1,100 do redis.call('HGET', KEYS[1], 'x') end return 0",
  '100 × HMGET of 5 fields': "for i=1,100 do redis.call('HMGET', KEYS[1], 'a','b','c','d','e') end return 0",
  '100 × ZADD (new member) + 1 DEL':
    "for i=1,100 do redis.call('ZADD', KEYS[2], i, 'm'..i) end redis.call('DEL', KEYS[2]) return 0",
  '100 × TIME': "for i=1,100 do redis.call('TIME') end return 0",
  '1000 × tonumber(ARGV[i])': 'local s=0 for i=1,1000 do s = s + tonumber(ARGV[1 + i % 60]) end return 0',
  '100 × closure': 'for i=1,100 do local f = function(x) return x end end return 0',
  '100 × 3-element table': 'for i=1,100 do local t = {i, i, i} end return 0',
  '100 × string .. number': "local s for i=1,100 do s = 'abc' .. i end return 0",
};
const redis = await startPrivateRedis();
const c = redis.client;
const args = Array.from({ length: 90 }, (_, i) => String(i));
try {
  for (const [name, src] of Object.entries(cases)) {
    const sha = await c.script('load', src);
    for (let i = 0; i < 200; i++) await c.evalsha(sha, 2, 'h', 'z', ...args);
    await c.config('set', 'slowlog-log-slower-than', '0');
    await c.config('set', 'slowlog-max-len', '2000');
    await c.slowlog('reset');
    for (let i = 0; i < 1000; i++) await c.evalsha(sha, 2, 'h', 'z', ...args);
    const log = await c.slowlog('get', '2000');
    await c.config('set', 'slowlog-log-slower-than', '-1');
    const us = log
      .filter((e) => String(e[3][0]).toLowerCase() === 'evalsha')
      .map((e) => Number(e[2]))
      .sort((a, b) => a - b);
    console.log(`${name.padEnd(34)} median ${us[us.length >> 1]} µs per EVALSHA`);
  }
} finally {
  await redis.close();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
