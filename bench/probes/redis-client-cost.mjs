// Probe (not part of `npm run bench`): the gateway-side CPU of the Redis client per script call,
// without the gateway around it. Replays the EVALSHA calls of one relayed request (a capture of
// `node bench/probes/script-replay.mjs capture <file>`: the admission on the limiter's `watched`
// connection, the other scripts on the `command` connection, as in the gateway) against a private
// redis-server, through RedisAtomicStore.run of two builds (--a, --b) and through a minimal RESP2
// client on a bare net.Socket (one write per event-loop turn, a small streaming parser: the floor
// any client could reach). Per request: a fresh lease id and client member, no deadline. Closed
// loops at concurrency 1 and 32 (--conc), rounds alternating the order; prints this process' CPU
// (process.cpuUsage: the client side only, Redis is another process) per script call, median and
// spread over rounds.
//   npm run build && node bench/probes/script-replay.mjs capture /tmp/cap.json
//   node bench/probes/redis-client-cost.mjs /tmp/cap.json [--a dist-before] [--b dist] [--n 3000]
//        [--rounds 5] [--conc 1,32]
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { startPrivateRedis } from '../sections/redis-cost.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const capFile = argv[0];
if (!capFile || capFile.startsWith('--'))
  throw new Error('usage: redis-client-cost.mjs <capture.json> [flags]');
const N = Number(arg('n', 3000));
const ROUNDS = Number(arg('rounds', 5));
const CONC = arg('conc', '1,32').split(',').map(Number);
const builds = { a: arg('a', 'dist-before'), b: arg('b', 'dist') };

const cap = JSON.parse(readFileSync(capFile, 'utf8'));
const PFX = cap.calls[0].rest[0].split(':')[0];
const admission = cap.calls.find((e) => cap.scripts[e.sha].includes('fg_client_evaluate'));
const release = cap.calls.find((e) => cap.scripts[e.sha].includes('fg_contribute'));
const lease = release.rest[release.numkeys];
/** The calls of request i: [sha, keys without the prefix, args, which connection]. */
const request = (i) => {
  const id = `${lease.slice(0, -8)}${String(i).padStart(8, '0')}`;
  return cap.calls.map((c) => {
    const rest = c.rest.map((v) => (v === lease ? id : v.replaceAll(lease, id)));
    if (c === admission) {
      rest[c.numkeys + 2] = `${id}m`;
      rest[c.numkeys + 3] = '0';
    }
    return {
      sha: c.sha,
      keys: rest.slice(0, c.numkeys).map((k) => k.slice(PFX.length + 1)),
      args: rest.slice(c.numkeys),
      watched: c === admission,
      script: { name: c.sha.slice(0, 8), lua: cap.scripts[c.sha], local: () => null },
    };
  });
};

const redis = await startPrivateRedis();
const port = Number(new URL(redis.url).port);
for (const src of Object.values(cap.scripts)) await redis.client.script('load', src);

const clients = [];
async function storesOf(dir) {
  const root = pathToFileURL(resolve(dir, 'src')).href;
  const { RedisConnections } = await import(`${root}/redis/redis.module.js`);
  const { RedisAtomicStore } = await import(`${root}/state/atomic-store.js`);
  const conns = new RedisConnections({ url: redis.url }, PFX);
  const watched = conns.watched('rate-limit', 1000).client;
  await Promise.all(
    [conns.command, watched].map((c) =>
      c.status === 'ready' ? null : new Promise((r) => c.once('ready', r)),
    ),
  );
  clients.push(conns);
  const command = new RedisAtomicStore(conns.command, PFX);
  const limiter = new RedisAtomicStore(watched, PFX);
  return (c) => (c.watched ? limiter : command).run(c.script, c.keys, c.args);
}

const INCOMPLETE = Symbol('incomplete');
/** The floor: EVALSHA written as one string per call, one socket write per turn, a minimal parser. */
class Lean {
  constructor() {
    this.q = [];
    this.head = 0;
    this.out = '';
    this.rest = null;
    this.sock = net.connect(port, '127.0.0.1');
    this.sock.setNoDelay(true);
    this.sock.on('data', (d) => this.onData(d));
    this.flush = () => {
      const s = this.out;
      this.out = '';
      this.sock.write(s);
    };
  }
  ready() {
    return new Promise((r) => this.sock.once('connect', r));
  }
  run(c) {
    let s = `*${3 + c.keys.length + c.args.length}\r\n$7\r\nEVALSHA\r\n$40\r\n${c.sha}\r\n`;
    const nk = String(c.keys.length);
    s += `$${nk.length}\r\n${nk}\r\n`;
    for (const k0 of c.keys) {
      const k = `${PFX}:${k0}`;
      s += `$${Buffer.byteLength(k)}\r\n${k}\r\n`;
    }
    for (const a0 of c.args) {
      const a = String(a0);
      s += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    }
    if (c.watched && this.syncWatched) this.sock.write(s);
    else {
      if (this.out === '') setImmediate(this.flush);
      this.out += s;
    }
    return new Promise((resolve, reject) => this.q.push({ resolve, reject }));
  }
  onData(d) {
    const b = this.rest ? Buffer.concat([this.rest, d]) : d;
    this.rest = null;
    this.b = b;
    this.pos = 0;
    while (this.pos < b.length) {
      const start = this.pos;
      const v = this.parse();
      if (v === INCOMPLETE) {
        this.rest = b.subarray(start);
        return;
      }
      const p = this.q[this.head];
      this.q[this.head++] = undefined;
      if (this.head > 1024 && this.head * 2 > this.q.length) {
        this.q = this.q.slice(this.head);
        this.head = 0;
      }
      if (v instanceof Error) p.reject(v);
      else p.resolve(v);
    }
  }
  int(from, to) {
    const b = this.b;
    let n = 0;
    let i = from;
    const neg = b[i] === 45;
    if (neg) i++;
    for (; i < to; i++) n = n * 10 + (b[i] - 48);
    return neg ? -n : n;
  }
  parse() {
    const b = this.b;
    if (this.pos >= b.length) return INCOMPLETE;
    const t = b[this.pos];
    const e = b.indexOf(13, this.pos);
    if (e < 0 || e + 1 >= b.length) return INCOMPLETE;
    const from = this.pos + 1;
    switch (t) {
      case 58:
        this.pos = e + 2;
        return this.int(from, e);
      case 43:
        this.pos = e + 2;
        return b.toString('utf8', from, e);
      case 45:
        this.pos = e + 2;
        return new Error(b.toString('utf8', from, e));
      case 36: {
        const n = this.int(from, e);
        if (n < 0) {
          this.pos = e + 2;
          return null;
        }
        const s = e + 2;
        if (s + n + 2 > b.length) return INCOMPLETE;
        this.pos = s + n + 2;
        return b.toString('utf8', s, s + n);
      }
      case 42: {
        const n = this.int(from, e);
        this.pos = e + 2;
        if (n < 0) return null;
        const arr = new Array(n);
        for (let i = 0; i < n; i++) {
          const v = this.parse();
          if (v === INCOMPLETE) return INCOMPLETE;
          arr[i] = v;
        }
        return arr;
      }
    }
    throw new Error('bad RESP');
  }
}

const lean = new Lean();
const leanSync = new Lean();
// as the limiter's connection does (RedisLiveness times the write): the admission written at once
leanSync.syncWatched = true;
await Promise.all([lean.ready(), leanSync.ready()]);
const variants = {
  [`a (${builds.a})`]: await storesOf(builds.a),
  [`b (${builds.b})`]: await storesOf(builds.b),
  'lean RESP floor': (c) => lean.run(c),
  'lean, admission unbatched': (c) => leanSync.run(c),
};

// the same replies through every variant
{
  const r = await Promise.all(Object.values(variants).map((f, v) => Promise.all(request(1e6 + v).map(f))));
  const shape = (x) => JSON.stringify(x, (_k, v) => (typeof v === 'number' ? 0 : v));
  if (new Set(r.map(shape)).size !== 1)
    console.error('warning: replies differ between variants:\n' + r.map(shape).join('\n'));
}

let seq = 0;
async function measure(f, conc) {
  let done = 0;
  const c0 = process.cpuUsage();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (done < N) {
        done++;
        for (const c of request(seq++)) await f(c);
      }
    }),
  );
  const cu = process.cpuUsage(c0);
  return (cu.user + cu.system) / done;
}

const calls = cap.calls.length;
for (const conc of CONC) {
  const res = {};
  for (const f of Object.values(variants)) await measure(f, conc); // warm-up
  for (let r = 0; r < ROUNDS; r++) {
    const names = Object.keys(variants);
    for (const name of r % 2 ? names.reverse() : names)
      (res[name] ??= []).push(await measure(variants[name], conc));
  }
  console.log(
    `\nconcurrency ${conc}, ${N} requests × ${calls} script calls, ${ROUNDS} rounds: client CPU µs`,
  );
  for (const [name, v] of Object.entries(res)) {
    v.sort((x, y) => x - y);
    const med = v[v.length >> 1];
    console.log(
      `  ${name.padEnd(28)} per request ${med.toFixed(1).padStart(6)} [${v[0].toFixed(1)}–${v.at(-1).toFixed(1)}]   per call ${(med / calls).toFixed(1)}`,
    );
  }
}
for (const c of clients) await c.onApplicationShutdown();
lean.sock.destroy();
leanSync.sock.destroy();
await redis.close();
process.exit(0);
