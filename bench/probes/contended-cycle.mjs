#!/usr/bin/env node
// Probe (not part of `npm run bench`): where the contended section's capacity goes, per slot cycle.
// Runs the contended closed loop (bench/sections/contended.mjs: 64 clients, one key of
// max_concurrent 8, a 20 ms upstream) against the reference proxy and the gateway in each mode, and
// splits each upstream slot's cycle into
//   service   upstream arrival → its response finished (the fake upstream's 20 ms timer + its lateness)
//   gap       response finished → the next request arrives (the hand-off; paired oldest-first)
// so that share ≈ 20 ms ÷ (mean service + mean gap), and the loss is attributed to the upstream's
// own timer (service − 20 ms, the same for every target) and to the hand-off. With the preload
// (bench/probes/contended-cycle-preload.mjs, default on; --no-marks) the gateway's part of the gap is
// split further, on the one CLOCK_MONOTONIC time line of every process here, by pairing each mark
// with the oldest unpaired mark of the step before it (all instances merged):
//   F→D  upstream finished → the gateway read the answer (undici complete)
//   D→R  answer read → LeaseKeeper.release (the client's answer sent first)
//   R→H  release → the hand-off step prepared (RelayDispatcher.capacityReleased: behind the
//        release on the store connection; in distributed mode a release batched behind the one in
//        flight waits for it)
//   H→W  hand-off → the grant delivered to its waiter (the dispatch step's store round, + the grant's
//        pub/sub message for a job of the other instance)
//   W→K  delivered → the waiter's wait() returned (the lease made whole)
//   K→S  woken → the upstream request's headers written (the rest of admission, send stage, undici)
//   S→A  written → arrived at the upstream (loopback + the upstream's parse)
// plus counts: hand-off steps by outcome (served / empty / wait), loop steps, grants over pub/sub;
// per hand-off step (not paired): capacityReleased → the first Redis write after it, and the step's
// own time to its answer (with --redis: a private redis-server whose port the preload watches);
// and for each woken waiter, what ran between it and its upstream write.
// On a machine loaded far beyond its cores every figure is the scheduler's: the probe's numbers in
// docs/performance.md were taken with `chrt -r 10` (this probe and its children, and a private
// redis-server, under SCHED_RR; the kernel's RT throttling keeps 5 % for the rest).
//
//   node bench/probes/contended-cycle.mjs [--entry dist/src/main.js] [--modes embedded,distributed]
//        [--rounds 3] [--seconds 6] [--no-ref] [--no-marks] [--redis redis://127.0.0.1:PORT] [--env K=V]…
import { fileURLToPath } from 'node:url';
import { readFileSync, rmSync } from 'node:fs';
import { closeRedis, configure, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, startServer } from '../lib/procs.mjs';
import { median, percentile } from '../lib/stats.mjs';
import { CONTENDED, contendedClosedLoop } from '../sections/contended.mjs';

const argv = process.argv.slice(2);
const arg = (n, d) => {
  const i = argv.indexOf(`--${n}`);
  return i === -1 ? d : argv[i + 1];
};
const entry = arg('entry', 'dist/src/main.js');
const modes = arg('modes', 'embedded,distributed').split(',');
const rounds = Number(arg('rounds', 3));
const seconds = Number(arg('seconds', 6));
const marksOn = !argv.includes('--no-marks');
const redisUrl = arg('redis', undefined);
const env = Object.fromEntries(argv.flatMap((a, i) => (argv[i - 1] === '--env' ? [a.split(/=(.*)/s).slice(0, 2)] : [])));
const root = fileURLToPath(new URL('../../', import.meta.url));
const preload = fileURLToPath(new URL('./contended-cycle-preload.mjs', import.meta.url));

/** Each `later` time paired with the oldest unpaired `earlier` time at or before it → the differences. */
function pairs(earlier, later) {
  const e = [...earlier].sort((a, b) => a - b);
  const l = [...later].sort((a, b) => a - b);
  const out = [];
  let i = 0;
  let taken = 0; // e[0..taken) consumed
  for (const t of l) {
    while (i < e.length && e[i] <= t) i++;
    if (taken < i) out.push(t - e[taken++]);
  }
  return out;
}
const mean = (xs) => (xs.length ? xs.reduce((s, x) => s + x, 0) / xs.length : NaN);
const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : '–');
const sorted = (xs) => [...xs].sort((a, b) => a - b);
const dist = (xs) => {
  const s = sorted(xs);
  return { n: s.length, mean: mean(s), p50: percentile(s, 50), p90: percentile(s, 90), p99: percentile(s, 99) };
};

function upstreamSide(q) {
  const { arrivals, finishes, services } = q.raw;
  const gaps = [];
  {
    // as bench/sections/queue.mjs handoffs(): each arrival paired with the oldest unpaired finish
    const ev = [...arrivals.map((t) => [t, 1]), ...finishes.map((t) => [t, 0])].sort((a, b) => a[0] - b[0] || a[1] - b[1]);
    const freed = [];
    let head = 0;
    for (const [t, isArrival] of ev) {
      if (!isArrival) freed.push(t);
      else if (head < freed.length) gaps.push(t - freed[head++]);
    }
  }
  const S = dist(services);
  const G = dist(gaps);
  const cycle = S.mean + G.mean;
  return {
    share: q.share,
    implied: CONTENDED.upstreamDelayMs / cycle,
    service: S,
    gap: G,
    lossTimer: (S.mean - CONTENDED.upstreamDelayMs) / cycle,
    lossGap: G.mean / cycle,
    // from the first upstream event after the reset (a finish may come before the first arrival)
    window: [Math.min(arrivals[0], finishes[0]), finishes[finishes.length - 1]],
    firstArrival: arrivals[0],
    arrivals,
    finishes,
  };
}

function gatewaySide(files, window) {
  const m = {};
  for (const f of files) {
    let j;
    try {
      j = JSON.parse(readFileSync(f, 'utf8'));
    } catch {
      continue;
    }
    rmSync(f, { force: true });
    for (const [k, v] of Object.entries(j)) (m[k] ??= []).push(...v);
  }
  const [a, b] = window;
  const inW = (xs) => xs.filter((x) => {
    const t = Array.isArray(x) ? x[0] : x;
    // the measured window only (the upstream's arrivals start at its reset): marks from before it
    // would shift the oldest-first pairing of a segment ending at the upstream
    return t >= a - 1 && t <= b;
  });
  const settled = (m.settled ?? []).filter(([t]) => t >= a && t <= b);
  return {
    m: Object.fromEntries(Object.entries(m).map(([k, v]) => [k, inW(v)])),
    settledKinds: settled.reduce((o, [, k]) => ((o[k] = (o[k] ?? 0) + 1), o), {}),
  };
}

installSignalHandlers();
const slow = await startServer('upstream', { delayMs: CONTENDED.upstreamDelayMs, stats: true });
const rows = {};
try {
  for (let r = 0; r < rounds; r++) {
    if (!argv.includes('--no-ref')) {
      const proxy = await startServer('plain', { upstreamUrl: slow.url, maxConcurrent: CONTENDED.maxConcurrent });
      try {
        const q = await contendedClosedLoop([proxy], slow, 'unused', { clients: 64, seconds, raw: true });
        (rows.reference ??= []).push({ up: upstreamSide(q) });
      } finally {
        await proxy.close();
      }
    }
    for (const mode of modes) {
      const outs = [];
      const start = async (name, join) => {
        const out = `/tmp/contended-cycle-${process.pid}-${name}.json`;
        outs.push(out);
        return startGateway(mode, {
          name,
          entry,
          ...(join ? { join } : {}),
          ...(redisUrl ? { redisUrl } : {}),
          nodeFlags: marksOn ? ['--import', preload] : [],
          env: { ...env, CYCLE_OUT: out, ...(redisUrl ? { CYCLE_REDIS_PORT: new URL(redisUrl).port } : {}), CYCLE_DIST: `${root}${entry.replace(/\/main\.js$/, '')}` },
        });
      };
      const first = await start(`cyc-${mode}`);
      const gws = [first];
      let q;
      try {
        const { clientKey } = await configure(first, slow.url, { keys: 1, maxConcurrent: CONTENDED.maxConcurrent });
        if (mode === 'distributed') gws.push(await start(`cyc-${mode}2`, first));
        q = await contendedClosedLoop(gws, slow, clientKey, { clients: 64, seconds, raw: true });
      } finally {
        for (const gw of gws.reverse()) await gw.stop();
      }
      const up = upstreamSide(q);
      const gw = marksOn ? gatewaySide(outs, up.window) : null;
      (rows[mode] ??= []).push({ up, gw, cpu: q.cpuPerServedUs, other: q.outcomes.other });
      console.error(
        `round ${r + 1} ${mode}: ${(q.share * 100).toFixed(1)} % (service ${f2(up.service.mean)} ms, gap ${f2(up.gap.mean)} ms), other ${q.outcomes.other}`,
      );
    }
    if (rows.reference) {
      const up = rows.reference.at(-1).up;
      console.error(`round ${r + 1} reference: ${(up.share * 100).toFixed(1)} % (service ${f2(up.service.mean)} ms, gap ${f2(up.gap.mean)} ms)`);
    }
  }
  console.log('\n| target | share | 20 ms ÷ (service + gap) | service mean / p50 / p99 ms | lost to the upstream timer | gap mean / p50 / p90 / p99 ms | lost to the gap |');
  console.log('| --- | ---: | ---: | --- | ---: | --- | ---: |');
  for (const [k, rs] of Object.entries(rows)) {
    const med = (f) => median(rs.map(f));
    console.log(
      `| ${k} | ${(med((x) => x.up.share) * 100).toFixed(1)} % | ${(med((x) => x.up.implied) * 100).toFixed(1)} % | ${f2(med((x) => x.up.service.mean))} / ${f2(med((x) => x.up.service.p50))} / ${f2(med((x) => x.up.service.p99))} | ${(med((x) => x.up.lossTimer) * 100).toFixed(1)} % | ${f2(med((x) => x.up.gap.mean))} / ${f2(med((x) => x.up.gap.p50))} / ${f2(med((x) => x.up.gap.p90))} / ${f2(med((x) => x.up.gap.p99))} | ${(med((x) => x.up.lossGap) * 100).toFixed(1)} % |`,
    );
  }
  if (!marksOn) process.exit(0);
  console.log('\nGateway part of the gap (medians over rounds of each segment\'s mean / p50 / p99, ms; oldest-first pairing, instances merged):\n');
  const SEG = [
    ['F→D', (x) => x.up.finishes, 'upDone'],
    ['D→R', 'upDone', 'release'],
    ['R→H', 'release', 'handoff'],
    ['H→W', 'handoff', 'deliver'],

    ['W→K', 'deliver', 'woken'],
    ['K→S', 'woken', 'upSend'],
    ['S→A', (x) => x.gw.m.upSend.filter((t) => t >= x.up.firstArrival - 0.5), (x) => x.up.arrivals],
  ];
  console.log(`| mode | ${SEG.map(([s]) => s).join(' | ')} | sum of means | per second: releases / hand-offs / loop steps / pub-sub grants / delivered / upSend | hand-off outcomes |`);
  console.log(`| --- | ${SEG.map(() => '---').join(' | ')} | ---: | --- | --- |`);
  for (const mode of modes) {
    const rs = rows[mode] ?? [];
    const segs = SEG.map(([, from, to]) =>
      rs.map((x) => {
        const get = (s) => (typeof s === 'function' ? s(x) : x.gw.m[s] ?? []);
        return dist(pairs(get(from), get(to)));
      }),
    );
    const cells = segs.map((ds) => `${f2(median(ds.map((d) => d.mean)))} / ${f2(median(ds.map((d) => d.p50)))} / ${f2(median(ds.map((d) => d.p99)))}`);
    const sum = segs.reduce((s, ds) => s + median(ds.map((d) => d.mean)), 0);
    const rate = (k) => Math.round(median(rs.map((x) => (x.gw.m[k]?.length ?? 0) / ((x.up.window[1] - x.up.window[0]) / 1000))));
    const kinds = {};
    for (const x of rs) for (const [k, v] of Object.entries(x.gw.settledKinds)) (kinds[k] ??= []).push(v);
    console.log(
      `| ${mode} | ${cells.join(' | ')} | ${f2(sum)} | ${rate('release')} / ${rate('handoff')} / ${rate('loopDispatch')} / ${rate('grantMsg')} / ${rate('deliver')} / ${rate('upSend')} | ${Object.entries(kinds).map(([k, v]) => `${k} ${median(v)}`).join(', ')} |`,
    );
  }
  console.log('\nThe hand-off step (per step, not paired): H→Redis write = capacityReleased → the first Redis write after it (release + dispatch leave); step = dispatchOnce called → its answer settled (served):\n');
  console.log('| mode | H→Redis write p50 / mean / p99 ms | step p50 / mean / p99 ms |');
  console.log('| --- | --- | --- |');
  for (const mode of modes) {
    const rs = rows[mode] ?? [];
    const d1 = rs.map((x) => dist((x.gw.m.handoffToWrite ?? []).map((e) => e[1])));
    const d2 = rs.map((x) => dist((x.gw.m.dispatchDur ?? []).filter((e) => e[2] === 'served').map((e) => e[1])));
    const cell = (ds) => `${f2(median(ds.map((d) => d.p50)))} / ${f2(median(ds.map((d) => d.mean)))} / ${f2(median(ds.map((d) => d.p99)))}`;
    console.log(`| ${mode} | ${cell(d1)} | ${cell(d2)} |`);
  }
  if (env.CYCLE_ELD) {
    console.log('\nEvent-loop stalls (CYCLE_ELD=1: a 1 ms interval late by more than 2 ms), per second of the window, medians over rounds:\n');
    console.log('| mode | stalls per s | stalled ms per s | longest ms |');
    console.log('| --- | ---: | ---: | ---: |');
    for (const mode of modes) {
      const rs = rows[mode] ?? [];
      const per = (x, f) => f(x.gw.m.eld ?? []) / ((x.up.window[1] - x.up.window[0]) / 1000);
      console.log(`| ${mode} | ${f2(median(rs.map((x) => per(x, (e) => e.length))))} | ${f2(median(rs.map((x) => per(x, (e) => e.reduce((s2, v) => s2 + v[1], 0)))))} | ${f2(median(rs.map((x) => Math.max(0, ...(x.gw.m.eld ?? []).map((v) => v[1])))))} |`);
    }
  }
  console.log('\nWoken → upstream write (K→S): how often other requests\' accounting (AccountStage.account) and release tails (KeyPoolService.report settling) ran in between, medians over rounds:\n');
  console.log('| mode | K→S p50 / mean ms | with an accounting inside | accounting calls inside (mean) | their CPU inside, mean ms | with a report settling inside |');
  console.log('| --- | ---: | ---: | ---: | ---: | ---: |');
  for (const mode of modes) {
    const rs = (rows[mode] ?? []).map((x) => x.gw.m.kToS ?? []).filter((k) => k.length);
    if (!rs.length) continue;
    const med = (f) => median(rs.map(f));
    console.log(
      `| ${mode} | ${f2(med((k) => percentile(sorted(k.map((e) => e[1])), 50)))} / ${f2(med((k) => mean(k.map((e) => e[1]))))} | ${(med((k) => k.filter((e) => e[2] > 0).length / k.length) * 100).toFixed(0)} % | ${f2(med((k) => mean(k.map((e) => e[2]))))} | ${f2(med((k) => mean(k.map((e) => e[3]))))} | ${(med((k) => k.filter((e) => e[4] > 0).length / k.length) * 100).toFixed(0)} % |`,
    );
  }
} finally {
  await slow.close();
  await cleanupAll();
  closeRedis();
}
