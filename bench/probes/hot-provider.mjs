#!/usr/bin/env node
// Issue 18 item 3: the per-provider ceiling on a Redis Cluster, and what sharding a hot provider into
// S providers behind one weighted route buys. One gateway (distributed mode, REDIS_CLUSTER_NODES) on a
// private three-master cluster; one client key (one key, user and IP subject) calls a route's model
// name; the route's tier 1 holds S equal-weight targets, S providers ("shards") on the same fake
// upstream with the 4 upstream keys split between them (S=1: one provider with the 4 keys, behind a
// route too, so the route's cost is in every row). Each shard's state is its own slot
// (`{<provider id>}`); the probe places the shards of one S on distinct masters (a shard whose slot
// lands on a master already used is deleted and made again, as an operator would).
//
// Per phase and master: Redis CPU per relayed request (INFO cpu deltas minus the idle rate). Every S
// and a baseline run in the same cluster with the same client, interleaved per load level: the
// baseline phase calls GET /api/me (the same client-limit steps, no provider), so a master's
// "provider part" = its µs/request with the relay minus its µs/request in the baseline — what the
// shard(s) on that master cost. The hottest master's provider part bounds one (sharded) provider:
// 1 core ÷ it. With --direct, S=1 is also measured without a route (the client calls the provider's
// model) — the route's own cost is the difference.
//
//   npm run build && node bench/probes/hot-provider.mjs [--shards 1,2,3] [--n 1000] [--seconds 5]
//        [--levels 8,32] [--rounds 1] [--direct]
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { admin, freePort, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, cpuMicros, installSignalHandlers, onCleanup, sleep, startServer, stopChild } from '../lib/procs.mjs';

const run = promisify(execFile);
const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const N = Number(arg('n', 1000));
const SECONDS = Number(arg('seconds', 5));
const LEVELS = arg('levels', '8,32').split(',').map(Number);
const SHARDS = arg('shards', '1,2,3').split(',').map(Number);
const ROUNDS = Number(arg('rounds', 1));
const DIRECT = argv.includes('--direct');
const KEYS = 4;

async function startCluster() {
  const root = await mkdtemp(join(tmpdir(), 'floodgate-bench-cluster-'));
  onCleanup(() => rm(root, { recursive: true, force: true }));
  const nodes = [];
  for (let i = 0; i < 3; i++) {
    const port = await freePort();
    const dir = join(root, String(port));
    await run('mkdir', ['-p', dir]);
    const proc = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
        '--save', '', '--appendonly', 'no', '--protected-mode', 'no', '--dir', dir],
      { stdio: 'ignore' },
    );
    onCleanup(() => stopChild(proc, 3000));
    nodes.push({ port, proc, address: `127.0.0.1:${port}` });
  }
  await sleep(500);
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => n.address), '--cluster-replicas', '0', '--cluster-yes']);
  for (const n of nodes) {
    n.client = new Redis({ port: n.port, host: '127.0.0.1', maxRetriesPerRequest: 1, retryStrategy: () => null });
    n.client.on('error', () => undefined);
    onCleanup(() => n.client.disconnect());
    for (let i = 0; ; i++) {
      if (String(await n.client.cluster('INFO')).includes('cluster_state:ok')) break;
      if (i > 200) throw new Error('cluster not ok');
      await sleep(100);
    }
  }
  return nodes;
}

const cpuUs = async (c) => {
  const info = await c.info('cpu');
  const g = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
  return (g('used_cpu_sys') + g('used_cpu_user')) * 1e6;
};

installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
let gw;
let pool;
try {
  const nodes = await startCluster();
  gw = await startGateway('distributed', { name: 'hot-provider', redisUrl: `cluster:${nodes.map((n) => n.address).join(',')}` });
  const sampleAll = async () => ({
    at: performance.now(),
    cpu: await Promise.all(nodes.map((n) => cpuUs(n.client))),
    gw: cpuMicros(gw.pid),
  });
  // which master serves a key: CLUSTER KEYSLOT, then CLUSTER SLOTS
  const ranges = await nodes[0].client.cluster('SLOTS');
  const masterOf = async (key) => {
    const slot = Number(await nodes[0].client.cluster('KEYSLOT', key));
    const r = ranges.find(([from, to]) => slot >= from && slot <= to);
    return nodes.findIndex((n) => n.port === Number(r[2][1]));
  };
  const base_url = `${upstream.url}/v1`;
  /** A provider on the fake upstream holding upstream keys `keys`, placed on a master not in `avoid`. */
  async function shard(name, keys, avoid) {
    for (let attempt = 0; ; attempt++) {
      const p = await admin(gw, 'POST', '/api/admin/providers', { name: `${name}-${attempt}`, base_url, models: [`${name}-direct`], timeout_ms: 30_000 });
      const master = await masterOf(`${gw.redisPrefix}:kp:{${p.id}}:seq`);
      if (!avoid.has(master) || attempt > 40 || avoid.size >= nodes.length) {
        for (const k of keys) await admin(gw, 'POST', `/api/admin/providers/${p.id}/keys`, { label: k, key: k, max_concurrent: 10_000 });
        return { id: p.id, name: `${name}-${attempt}`, master, keys };
      }
      // (admin() sends a JSON content-type, which a body-less DELETE may not carry)
      const del = await fetch(`${gw.url}/api/admin/providers/${p.id}`, { method: 'DELETE', headers: { authorization: `Bearer ${gw.adminKey}` } });
      if (del.status !== 204) throw new Error(`DELETE provider: ${del.status} ${await del.text()}`);
    }
  }
  // one route per S: 'hot-s<S>' over S shards, the 4 keys dealt round-robin
  const configs = [];
  for (const s of SHARDS) {
    const avoid = new Set();
    const shards = [];
    for (let i = 0; i < s; i++) {
      const keys = Array.from({ length: KEYS }, (_, k) => k).filter((k) => k % s === i).map((k) => `sk-s${s}-${k}`);
      const made = await shard(`hot-s${s}-${i + 1}`, keys, avoid);
      avoid.add(made.master);
      shards.push(made);
    }
    await admin(gw, 'POST', '/api/admin/routes', {
      model: `hot-s${s}`,
      targets: shards.map((p) => ({ provider_id: p.id, model: 'bench-model', weight: 1, tier: 1 })),
    });
    configs.push({ label: `S=${s}`, model: `hot-s${s}`, shards });
    if (s === 1 && DIRECT) configs.push({ label: 'S=1 direct', model: `${shards[0].name.replace(/-\d+$/, '')}-direct`, shards });
  }
  const me = await admin(gw, 'GET', '/api/me');
  const key = await admin(gw, 'POST', `/api/admin/users/${me.user?.id ?? me.id}/keys`, {
    name: 'bench', limits: { rpm: 1000000, tpm: null }, max_priority: 'urgent',
  });
  pool = new Pool(gw.url, { connections: Math.max(1, ...LEVELS), keepAliveTimeout: 60_000 });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${key.key}` };
  let failed = 0;
  const call = (model) =>
    model === null
      ? async () => {
          const r = await pool.request({ path: '/api/me', method: 'GET', headers });
          await r.body.dump();
          if (r.statusCode !== 200) failed++;
        }
      : async () => {
          const body = JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] });
          const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body });
          await r.body.dump();
          if (r.statusCode !== 200) failed++;
        };
  for (const c of configs) for (let i = 0; i < 300; i++) await call(c.model)();
  for (let i = 0; i < 300; i++) await call(null)();
  if (failed > 0) throw new Error(`${failed} warm-up requests failed`);
  // what each master holds: the client's subjects (rl:{…}) and the shards
  const holds = nodes.map(() => []);
  for (const [k, n] of nodes.entries()) {
    let cursor = '0';
    do {
      const [next, keys] = await n.client.scan(cursor, 'MATCH', `${gw.redisPrefix}:rl:{*`, 'COUNT', 1000);
      cursor = next;
      for (const key of keys) {
        const tag = /\{(\w+):/.exec(key)?.[1];
        if (tag && !holds[k].includes(tag)) holds[k].push(tag);
      }
    } while (cursor !== '0');
  }
  for (const c of configs) {
    if (c.label.endsWith('direct')) continue;
    for (const [i, s] of c.shards.entries()) holds[s.master].push(`${c.label}#${i + 1}`);
  }
  await sleep(1000);
  const i0 = await sampleAll();
  await sleep(3000);
  const i1 = await sampleAll();
  const idleRate = i1.cpu.map((v, k) => (v - i0.cpu[k]) / ((i1.at - i0.at) / 1000));
  const rows = [];
  const phase = async (level, label, one, conns) => {
    failed = 0;
    const s0 = await sampleAll();
    let done = 0;
    if (conns === 1) for (; done < N; done++) await one();
    else {
      const end = performance.now() + SECONDS * 1000;
      await Promise.all(Array.from({ length: conns }, async () => {
        while (performance.now() < end) {
          await one();
          done++;
        }
      }));
    }
    const s1 = await sampleAll();
    const secs = (s1.at - s0.at) / 1000;
    const per = s1.cpu.map((v, k) => Math.max(0, v - s0.cpu[k] - idleRate[k] * secs) / done);
    const row = { level, label, done, rps: done / secs, failed, per, gwUs: (s1.gw - s0.gw) / done, load: loadavg()[0] };
    // the provider part is measured against the baseline phase run just before, at the same level
    row.base = label.startsWith('baseline') ? row : rows.at(-1).base;
    rows.push(row);
  };
  for (let round = 0; round < ROUNDS; round++) {
    for (const c of [1, ...LEVELS]) {
      await phase(`c=${c}`, 'baseline (GET /api/me)', call(null), c);
      for (const cfg of configs) await phase(`c=${c}`, cfg.label, call(cfg.model), c);
    }
  }
  console.log(`masters: ${holds.map((h, k) => `master ${k + 1} holds ${h.join(', ') || '—'}`).join('; ')}`);
  console.log(`(key/user/ip: the client's limit subjects; S=s#i: shard i of the route over s shards)\n`);
  console.log(`| load | config | requests | req/s | failed | gateway µs/req | ${nodes.map((_, k) => `master ${k + 1} µs/req (provider part)`).join(' | ')} | all masters µs/req | hottest provider part µs/req | provider ceiling (1 core ÷ it) | load avg |`);
  console.log(`| --- | --- | ---: | ---: | ---: | ---: | ${nodes.map(() => '---:').join(' | ')} | ---: | ---: | ---: | ---: |`);
  for (const r of rows) {
    const base = r.base;
    const total = r.per.reduce((a, b) => a + b, 0);
    const isBase = r === base;
    const part = r.per.map((v, k) => v - base.per[k]);
    const hottest = Math.max(...part);
    console.log(`| ${r.level} | ${r.label} | ${r.done} | ${Math.round(r.rps)} | ${r.failed} | ${r.gwUs.toFixed(0)} | ${r.per.map((v, k) => (isBase ? v.toFixed(0) : `${v.toFixed(0)} (${part[k].toFixed(0)})`)).join(' | ')} | ${total.toFixed(0)} | ${isBase ? '' : hottest.toFixed(0)} | ${isBase ? '' : `${Math.round(1e6 / Math.max(1, hottest)).toLocaleString('en')} req/s`} | ${r.load.toFixed(1)} |`);
  }
} finally {
  await pool?.close().catch(() => undefined);
  await gw?.stop();
  await upstream.close();
  await cleanupAll();
  const { closeRedis } = await import('../lib/gateway.mjs');
  closeRedis();
}
process.exit(0);
