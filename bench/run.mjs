#!/usr/bin/env node
// `npm run bench`: builds (via npm script), then measures Floodgate against baselines in the same
// run and writes bench/RESULTS.md. Targets 127.0.0.1 only; bounded in count and time.
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { configure, startGateway } from './lib/gateway.mjs';
import { startFakeUpstream } from './lib/fake-upstream.mjs';
import { startPlainProxy } from './lib/plain-proxy.mjs';
import { fmt } from './lib/stats.mjs';
import { interleavedLatency } from './latency.mjs';

const quick = process.argv.includes('--quick');
const started = Date.now();
const lines = [];
const log = (s = '') => {
  console.log(s);
  lines.push(s);
};

async function metricValue(gw, name) {
  const text = await (await fetch(`${gw.url}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : NaN;
}

const upstream = await startFakeUpstream();
const plain = await startPlainProxy(upstream.url);
const rows = [];
const notes = [];
try {
  for (const mode of ['embedded', 'distributed']) {
    const gw = await startGateway(mode);
    try {
      const { clientKey } = await configure(gw, upstream.url);
      const json = { 'content-type': 'application/json' };
      const result = await interleavedLatency(
        [
          { name: 'direct', url: upstream.url, path: '/v1/chat/completions', headers: { ...json, authorization: 'Bearer sk-direct' } },
          { name: 'plain proxy', url: plain.url, path: '/v1/chat/completions', headers: json },
          { name: `floodgate (${mode})`, url: gw.url, path: '/v1/chat/completions', headers: { ...json, authorization: `Bearer ${clientKey}` } },
        ],
        quick ? { rounds: 5, perRound: 40, warmup: 100 } : { rounds: 15, perRound: 100, warmup: 300 },
      );
      for (const r of result) if (r.name !== 'direct' && (mode === 'embedded' || r.name !== 'plain proxy')) rows.push(r);
      const queued = await metricValue(gw, 'floodgate_queue_wait_seconds_sum');
      notes.push(`${mode}: queue wait total on the uncontended path = ${queued} s (the queue is never touched)`);
    } finally {
      await gw.stop();
    }
  }
} finally {
  await plain.close();
  await upstream.close();
}

log('### Added latency at concurrency 1 (non-streaming, median of round medians, ms)');
log('');
log('| target | p50 | p99 | added p50 vs direct | added p99 vs direct |');
log('| --- | ---: | ---: | ---: | ---: |');
for (const r of rows) log(`| ${r.name} | ${fmt(r.p50)} | ${fmt(r.p99)} | ${fmt(r.addedP50)} | ${fmt(r.addedP99)} |`);
log('');
for (const n of notes) log(`- ${n}`);
const plainRow = rows.find((r) => r.name === 'plain proxy');
for (const r of rows.filter((x) => x.name.startsWith('floodgate'))) {
  log(`- ${r.name}: added p50 is ${fmt(r.addedP50 / plainRow.addedP50, 1)}× the plain proxy's`);
}

const cpu = os.cpus();
const header = [
  '# Benchmark results',
  '',
  `Date: ${new Date().toISOString()}  `,
  `Machine: ${cpu.length} × ${cpu[0]?.model ?? 'unknown CPU'}, ${Math.round(os.totalmem() / 2 ** 30)} GiB, ${os.type()} ${os.release()}, Node ${process.version}  `,
  `Load generator, fake upstream, Postgres and Redis all on the same machine (127.0.0.1). Run: \`npm run bench\`${quick ? ' -- --quick' : ''} (${Math.round((Date.now() - started) / 1000)} s).`,
  '',
];
await writeFile(new URL('./RESULTS.md', import.meta.url), [...header, ...lines, ''].join('\n'));
console.log('\nwrote bench/RESULTS.md');
