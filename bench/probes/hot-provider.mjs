#!/usr/bin/env node
// Issue 18 item 3: the per-provider ceiling on a Redis Cluster. One gateway (distributed mode,
// REDIS_CLUSTER_NODES) on a private three-master cluster, ONE provider with 4 keys taking all the
// traffic; per master: Redis CPU per relayed request (INFO cpu deltas minus the idle rate) and
// which master holds the provider's slot (its kp:{<provider>} keys). The provider's master carries
// the selection and the answer path of every request of that provider; the client-limit steps go
// to the subjects' masters. 1 core ÷ the provider master's CPU per request = the most one provider
// can relay whatever the number of masters (its state is one slot).
//
//   npm run build && node bench/probes/hot-provider.mjs [--n 1000] [--seconds 5] [--levels 8,32]
import { execFile, spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Redis } from 'ioredis';
import { Pool } from 'undici';
import { configure, freePort, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, onCleanup, sleep, startServer, stopChild } from '../lib/procs.mjs';
import { CHAT_BODY } from '../sections/throughput.mjs';

const run = promisify(execFile);
const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const N = Number(arg('n', 1000));
const SECONDS = Number(arg('seconds', 5));
const LEVELS = arg('levels', '8,32').split(',').map(Number);

async function startCluster() {
  const root = await mkdtemp(join(tmpdir(), 'floodgate-bench-cluster-'));
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
    nodes.push({ port, proc });
  }
  await sleep(500);
  await run('redis-cli', ['--cluster', 'create', ...nodes.map((n) => `127.0.0.1:${n.port}`), '--cluster-replicas', '0', '--cluster-yes']);
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
  onCleanup(() => rm(root, { recursive: true, force: true }));
  return nodes;
}

const cpuUs = async (c) => {
  const info = await c.info('cpu');
  const g = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)?.[1] ?? NaN);
  return (g('used_cpu_sys') + g('used_cpu_user')) * 1e6;
};
const sampleAll = async (nodes) => ({ at: performance.now(), cpu: await Promise.all(nodes.map((n) => cpuUs(n.client))) });

async function holdsProvider(c) {
  const [, keys] = await c.scan(0, 'MATCH', '*kp:{*', 'COUNT', 10000);
  return keys.length > 0;
}

installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
let gw;
let pool;
try {
  const nodes = await startCluster();
  gw = await startGateway('distributed', { name: 'hot-provider', redisUrl: `cluster:${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}` });
  const { clientKey } = await configure(gw, upstream.url, { keys: 4 });
  pool = new Pool(gw.url, { connections: Math.max(1, ...LEVELS), keepAliveTimeout: 60_000 });
  const headers = { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` };
  let failed = 0;
  const one = async () => {
    const r = await pool.request({ path: '/v1/chat/completions', method: 'POST', headers, body: CHAT_BODY });
    await r.body.dump();
    if (r.statusCode !== 200) failed++;
  };
  for (let i = 0; i < 300; i++) await one();
  await sleep(1000);
  const holders = await Promise.all(nodes.map((n) => holdsProvider(n.client)));
  const i0 = await sampleAll(nodes);
  await sleep(3000);
  const i1 = await sampleAll(nodes);
  const idleRate = i1.cpu.map((v, k) => (v - i0.cpu[k]) / ((i1.at - i0.at) / 1000));
  const rows = [];
  const phase = async (label, conns, body) => {
    failed = 0;
    const s0 = await sampleAll(nodes);
    const done = await body();
    const s1 = await sampleAll(nodes);
    const secs = (s1.at - s0.at) / 1000;
    const per = s1.cpu.map((v, k) => Math.max(0, v - s0.cpu[k] - idleRate[k] * secs) / done);
    rows.push({ label, done, rps: done / secs, failed, per });
  };
  await phase('c=1', 1, async () => {
    for (let i = 0; i < N; i++) await one();
    return N;
  });
  for (const c of LEVELS) {
    await phase(`c=${c}`, c, async () => {
      let done = 0;
      const end = performance.now() + SECONDS * 1000;
      await Promise.all(Array.from({ length: c }, async () => {
        while (performance.now() < end) {
          await one();
          done++;
        }
      }));
      return done;
    });
  }
  const p = holders.indexOf(true);
  console.log(`| load | requests | req/s | failed | ${nodes.map((n, k) => `master ${k + 1}${k === p ? ' (provider)' : ''} µs/req`).join(' | ')} | all masters µs/req | one provider's ceiling (1 core ÷ its master) |`);
  console.log(`| --- | ---: | ---: | ---: | ${nodes.map(() => '---:').join(' | ')} | ---: | ---: |`);
  for (const r of rows) {
    const total = r.per.reduce((a, b) => a + b, 0);
    const ceiling = p >= 0 ? Math.round(1e6 / r.per[p]).toLocaleString('en') : 'n/a';
    console.log(`| ${r.label} | ${r.done} | ${Math.round(r.rps)} | ${r.failed} | ${r.per.map((v) => v.toFixed(0)).join(' | ')} | ${total.toFixed(0)} | ${ceiling} req/s |`);
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
