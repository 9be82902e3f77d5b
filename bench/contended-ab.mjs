#!/usr/bin/env node
// A/B of two builds on the contended section (bench/sections/contended.mjs) in one run: per round,
// mode and build a fresh gateway (two instances of one cluster in distributed mode), the closed loop,
// then stopped; rounds alternate which build goes first. Medians over rounds.
//
//   npm run build && cp -r dist dist-before   # (on the old code), then rebuild the new code
//   node bench/contended-ab.mjs [--a dist-before/src/main.js] [--b dist/src/main.js]
//        [--modes embedded,distributed] [--rounds 3] [--seconds 6] [--prof DIR] [--env KEY=VALUE]…
//        [--parallel | --interleave] [--warmup S] [--no-baseline] [--redis URL]
// (--parallel: both builds loaded at the same time, each with its own upstream: on a shared machine
// both then meet the same background load — and each other's. --interleave: both builds started
// once per mode, then --rounds short loops alternating A and B: paired samples close in time.)
// (--prof: node --cpu-prof of every gateway into DIR, for bench/lib/cpuprofile.mjs.)
// Unless --no-baseline, every round also runs the reference of the contended section: the plain
// proxy with a FIFO semaphore of max_concurrent (bench/lib/plain-proxy.mjs), measured the same way
// against the same upstream, and the table gives each build's share as a ratio of it.
import { closeRedis, configure, startGateway } from './lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer } from './lib/procs.mjs';
import { median } from './lib/stats.mjs';
import { CONTENDED, contendedClosedLoop } from './sections/contended.mjs';

const argv = process.argv.slice(2);
const arg = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const builds = [
  ['A', arg('a', 'dist-before/src/main.js')],
  ['B', arg('b', 'dist/src/main.js')],
];
const modes = arg('modes', 'embedded,distributed').split(',');
const rounds = Number(arg('rounds', 3));
const seconds = Number(arg('seconds', 6));
const prof = arg('prof', '');
const parallel = argv.includes('--parallel');
const interleave = argv.includes('--interleave');
const warmupS = Number(arg('warmup', 2));
const baseline = !argv.includes('--no-baseline');
/** --redis: e.g. a private redis-server, so other tenants' commands don't sit between ours. */
const redisUrl = arg('redis', undefined);
const env = Object.fromEntries(argv.flatMap((a, i) => (argv[i - 1] === '--env' ? [a.split(/=(.*)/s).slice(0, 2)] : [])));

installSignalHandlers();
const slows = [];
for (let i = 0; i < (parallel || interleave ? 2 : 1); i++) slows.push(await startServer('upstream', { delayMs: CONTENDED.upstreamDelayMs, stats: true }));
const results = {};

/** The reference: plain proxy + FIFO semaphore of max_concurrent, one round against `slow`. */
async function proxyRound(slow, round) {
  const proxy = await startServer('plain', { upstreamUrl: slow.url, maxConcurrent: CONTENDED.maxConcurrent });
  try {
    const q = await contendedClosedLoop([proxy], slow, 'unused', { clients: 64, seconds, warmupS });
    (results['reference proxy'] ??= []).push(q);
    console.error(
      `round ${round + 1} reference proxy: ${(q.share * 100).toFixed(1)} % of capacity (upstream ${q.serviceMs.toFixed(2)} ms/request, busy ${(q.busyShare * 100).toFixed(1)} %), hand-off p50 ${q.handoff.p50.toFixed(2)} p99 ${q.handoff.p99.toFixed(2)} ms, ${Math.round(q.cpuPerServedUs)} µs CPU/served`,
    );
  } finally {
    await proxy.close();
  }
}

async function one(mode, label, entry, slow, r) {
  const nodeFlags = prof ? ['--cpu-prof', `--cpu-prof-dir=${prof}/${label}-${mode}`] : [];
  const first = await startGateway(mode, { name: `cab-${label}`, entry, nodeFlags, env, ...(redisUrl ? { redisUrl } : {}) });
  const gws = [first];
  try {
    const { clientKey } = await configure(first, slow.url, { keys: 1, maxConcurrent: CONTENDED.maxConcurrent });
    if (mode === 'distributed') gws.push(await startGateway(mode, { name: `cab-${label}2`, entry, nodeFlags, env, join: first, ...(redisUrl ? { redisUrl } : {}) }));
    return { gws, clientKey, run: async (round = r) => {
      const q = await contendedClosedLoop(gws, slow, clientKey, { clients: 64, seconds, warmupS });
      (results[`${mode} ${label}`] ??= []).push(q);
      console.error(
        `round ${round + 1} ${mode} ${label}: ${(q.share * 100).toFixed(1)} % of capacity (upstream ${q.serviceMs.toFixed(2)} ms/request, busy ${(q.busyShare * 100).toFixed(1)} %), hand-off p50 ${q.handoff.p50.toFixed(2)} p99 ${q.handoff.p99.toFixed(2)} ms, ${Math.round(q.cpuPerServedUs)} µs CPU/served, other ${q.outcomes.other} ${JSON.stringify(q.other)}`,
      );
    } };
  } catch (err) {
    for (const gw of gws.reverse()) await gw.stop();
    throw err;
  }
}

try {
  if (interleave) {
    // Both builds started once per mode; then short closed loops, alternating A/B, many rounds:
    // paired samples taken close in time, so a change of background load hits both.
    for (const mode of modes) {
      const sets = [];
      try {
        for (const [i, [label, entry]] of builds.entries()) sets.push(await one(mode, label, entry, slows[i], 0));
        for (let r = 0; r < rounds; r++) {
          for (const s of r % 2 ? [...sets].reverse() : sets) await s.run(r);
          if (baseline && mode === modes[0]) await proxyRound(slows[0], r);
        }
      } finally {
        for (const s of sets) for (const gw of s.gws.reverse()) await gw.stop();
      }
    }
  }
  for (let r = 0; r < (interleave ? 0 : rounds); r++) {
    if (baseline) await proxyRound(slows[0], r);
    for (const mode of modes) {
      const order = r % 2 ? [...builds].reverse() : builds;
      if (parallel) {
        // Both builds at once, each against its own upstream: the same background load for both.
        const sets = [];
        try {
          for (const [i, [label, entry]] of order.entries()) sets.push(await one(mode, label, entry, slows[i], r));
          await Promise.all(sets.map((s) => s.run()));
        } finally {
          for (const s of sets) for (const gw of s.gws.reverse()) await gw.stop();
        }
        continue;
      }
      for (const [label, entry] of order) {
        const s = await one(mode, label, entry, slows[0], r);
        try {
          await s.run();
        } finally {
          for (const gw of s.gws.reverse()) await gw.stop();
        }
      }
    }
  }
  const ref = results['reference proxy'] ? median(results['reference proxy'].map((q) => q.share)) : NaN;
  // "upstream busy": the share of the upstream's slot time spent serving (upstream req/s × its mean
  // time per request ÷ max_concurrent) — the share of capacity with the fake upstream's own timer
  // lateness (service > 20 ms, the same for every target) taken out.
  console.log('| mode | build | of capacity | of the reference proxy | upstream ms per request | upstream busy | hand-off p50 ms | hand-off p99 ms | CPU µs per served | gateway cores | rounds (share) |');
  console.log('| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |');
  for (const [k, qs] of Object.entries(results)) {
    const [mode, label] = k.split(' ');
    const share = median(qs.map((q) => q.share));
    console.log(
      `| ${mode} | ${label} | ${(share * 100).toFixed(1)} % | ${Number.isNaN(ref) ? '–' : `${((share / ref) * 100).toFixed(1)} %`} | ${median(qs.map((q) => q.serviceMs)).toFixed(2)} | ${(median(qs.map((q) => q.busyShare)) * 100).toFixed(1)} % | ${median(qs.map((q) => q.handoff.p50)).toFixed(2)} | ${median(qs.map((q) => q.handoff.p99)).toFixed(2)} | ${Math.round(median(qs.map((q) => q.cpuPerServedUs)))} | ${median(qs.map((q) => q.gatewayCores)).toFixed(2)} | ${qs.map((q) => `${(q.share * 100).toFixed(0)}`).join(' / ')} |`,
    );
  }
} finally {
  for (const slow of slows) await slow.close();
  await cleanupAll();
  closeRedis();
}
