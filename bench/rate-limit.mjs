#!/usr/bin/env node
// The rate limiter's cost per request: one RateLimitService decision (one EVALSHA evaluating every
// policy) against a plain Redis PING on the same connection, interleaved in the same run so machine
// noise hits both alike. Also: concurrent throughput, and the Redis memory a subject costs.
//
//   npm run build && node bench/rate-limit.mjs [--quick]      (REDIS_URL, default redis://127.0.0.1:6379)
//
// Prints a markdown table (copied into docs/rate-limit.md). Writes only keys under a random prefix,
// deleted at the end.
import { Redis } from 'ioredis';
import { randomBytes } from 'node:crypto';
import os from 'node:os';
import { loadConfig } from '../dist/src/config/app-config.js';
import { ClientIpService } from '../dist/src/rate-limit/client-ip.service.js';
import { applicablePolicies, requestPolicy } from '../dist/src/rate-limit/policies.js';
import { RateLimitService } from '../dist/src/rate-limit/rate-limit.service.js';
import { RedisAtomicStore } from '../dist/src/state/atomic-store.js';

const quick = process.argv.includes('--quick');
const N = quick ? 500 : 5000;
const CONCURRENCY = 64;
const THROUGHPUT_MS = quick ? 500 : 2000;
const url = process.env.REDIS_URL ?? 'redis://127.0.0.1:6379';
const prefix = `fgbench_${process.pid}_${randomBytes(3).toString('hex')}`;

const redis = new Redis(url, { enableOfflineQueue: true });
const store = new RedisAtomicStore(redis, prefix);
const config = loadConfig({
  REDIS_URL: url,
  DATABASE_URL: 'postgres://unused/test',
  RATE_LIMIT_IP_RPM: '1000000',
});
const limiter = new RateLimitService(config, store, new ClientIpService(config), { find: async () => null });

const principal = (keyId, rpm = 1_000_000) => ({
  userId: `user-${keyId}`,
  email: null,
  role: 'user',
  method: 'api_key',
  apiKeyId: keyId,
  apiKey: { rpm, tpm: null, allowedModels: null, maxPriority: 'normal' },
});

// A typical API-key request: key + user + ip sliding windows (limits high enough to admit all).
const admitPolicies = applicablePolicies({
  config: config.rateLimit,
  principal: principal('hot'),
  clientIp: '203.0.113.7',
});
// A key at its limit: every call is a refusal (nothing written).
const fullKey = requestPolicy('key', 'sliding_window', 10, 60_000, 0, 'key:full');
// One token bucket policy (1000/s, burst 1000000: always admits).
const bucket = requestPolicy('route', 'token_bucket', 1_000_000, 1000, 1_000_000, 'key:tb', true);

const us = (ns) => Number(ns) / 1000;
function summary(samples) {
  const s = [...samples].sort((a, b) => a - b);
  const at = (q) => s[Math.min(s.length - 1, Math.ceil(s.length * q) - 1)];
  return { p50: at(0.5), p99: at(0.99), mean: s.reduce((a, b) => a + b, 0) / s.length };
}

async function time(fn) {
  const t = process.hrtime.bigint();
  await fn();
  return us(process.hrtime.bigint() - t);
}

async function expectKind(policies, kind) {
  const d = await limiter.decide(policies);
  if (d.kind !== kind) throw new Error(`expected ${kind}, got ${d.kind}${d.reason ? `: ${d.reason}` : ''}`);
}

try {
  await redis.ping();
  // warm up: load the script (NOSCRIPT → EVAL once), JIT, fill the refused key to its limit
  for (let i = 0; i < 200; i++) {
    await redis.ping();
    await limiter.decide(admitPolicies);
    await limiter.decide([bucket]);
  }
  for (let i = 0; i < 10; i++) await limiter.decide([fullKey]);
  await expectKind([fullKey], 'limited');
  await expectKind(admitPolicies, 'admitted');

  const ping = [];
  const admit = [];
  const refuse = [];
  const tb = [];
  for (let i = 0; i < N; i++) {
    ping.push(await time(() => redis.ping()));
    admit.push(await time(() => limiter.decide(admitPolicies)));
    refuse.push(await time(() => limiter.decide([fullKey])));
    tb.push(await time(() => limiter.decide([bucket])));
  }

  async function throughput(fn) {
    let n = 0;
    const end = Date.now() + THROUGHPUT_MS;
    await Promise.all(
      Array.from({ length: CONCURRENCY }, async () => {
        while (Date.now() < end) {
          await fn();
          n++;
        }
      }),
    );
    return Math.round(n / (THROUGHPUT_MS / 1000));
  }
  const pingRate = await throughput(() => redis.ping());
  const decideRate = await throughput(() => limiter.decide(admitPolicies));

  // memory: one subject's sliding-window log at 60 and at 1,000 entries, one token bucket
  async function logBytes(entries) {
    const p = requestPolicy('key', 'sliding_window', entries, 60_000, 0, `key:mem${entries}`);
    for (let i = 0; i < entries; i++) await expectKind([p], 'admitted');
    return redis.memory('USAGE', `${prefix}:${p.keys[0]}`, 'SAMPLES', 0);
  }
  const mem60 = await logBytes(60);
  const mem1000 = await logBytes(1000);
  const memBucket = requestPolicy('ip', 'token_bucket', 1000, 60_000, 100, 'ip:203.0.113.8');
  await expectKind([memBucket], 'admitted');
  const tbBytes = await redis.memory('USAGE', `${prefix}:${memBucket.keys[0]}`, 'SAMPLES', 0);

  const stats = limiter.stats();
  if (stats.storeErrors > 0) throw new Error(`${stats.storeErrors} store errors during the run`);

  const rows = [
    ['Redis PING (baseline round trip)', summary(ping)],
    ['decision, 3 policies (key+user+ip), admitted', summary(admit)],
    ['decision, refused (key at its limit)', summary(refuse)],
    ['decision, 1 token bucket, admitted', summary(tb)],
  ];
  const f = (v) => v.toFixed(0);
  const out = [];
  out.push(
    `Rate limiter cost — ${new Date().toISOString().slice(0, 10)}, ${os.cpus().length}× ${os.cpus()[0]?.model ?? 'cpu'}, load ${os.loadavg()[0].toFixed(1)}, Redis at ${new URL(url).host}, ${N} sequential samples each (interleaved)`,
  );
  out.push('');
  out.push('| operation | p50 µs | p99 µs | mean µs |');
  out.push('| --- | ---: | ---: | ---: |');
  for (const [name, s] of rows) out.push(`| ${name} | ${f(s.p50)} | ${f(s.p99)} | ${f(s.mean)} |`);
  const added = summary(admit).p50 - summary(ping).p50;
  out.push('');
  out.push(
    `Added cost of a 3-policy decision over a bare round trip: **${f(added)} µs at p50** (${(summary(admit).p50 / summary(ping).p50).toFixed(2)}× a PING).`,
  );
  out.push(
    `Throughput, ${CONCURRENCY} concurrent on one connection: ${pingRate.toLocaleString('en')} PING/s, ${decideRate.toLocaleString('en')} decisions/s.`,
  );
  out.push(
    `Redis memory per subject: sliding-window log ${mem60} B at 60 entries (${(mem60 / 60).toFixed(0)} B/entry), ` +
      `${mem1000} B at 1,000 entries (${(mem1000 / 1000).toFixed(0)} B/entry); token bucket ${tbBytes} B.`,
  );
  console.log(out.join('\n'));
} finally {
  let cursor = '0';
  do {
    const [next, keys] = await redis.scan(cursor, 'MATCH', `${prefix}:*`, 'COUNT', 1000);
    cursor = next;
    if (keys.length > 0) await redis.del(...keys);
  } while (cursor !== '0');
  redis.disconnect();
}
