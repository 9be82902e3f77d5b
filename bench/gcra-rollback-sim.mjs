#!/usr/bin/env node
// docs/scaling.md, "Next step": how far a token-bucket rollback (TAT' = max(TAT − interval·cost, now))
// can be from the ideal state — GCRA over only the requests actually admitted — when other requests
// ran between the admission and the rollback. Random buckets, arrivals and windows; cost 1.
// Result (300,000 cases): never less permissive; at most one interval more permissive; inexact only
// when the bucket was full (TAT behind the clock) at some point between admission and rollback.
// Usage: node bench/gcra-rollback-sim.mjs [cases]
const cases = Number(process.argv[2] ?? 300_000);
let worstMore = 0;
let worstLess = 0;
let exact = 0;
let runs = 0;
let inexactNeverFull = 0;
for (let c = 0; c < cases; c++) {
  const interval = 1 + Math.floor(Math.random() * 50);
  const burst = 1 + Math.floor(Math.random() * 5);
  const ok = (state, now) => Math.max(state, now) + interval - burst * interval <= now;
  let t = Math.floor(Math.random() * 100);
  let tat = Math.floor(Math.random() * 200);
  let ideal = tat;
  if (!ok(tat, t)) continue;
  let wasFull = tat <= t;
  tat = Math.max(tat, t) + interval; // the request that a later step refuses
  const others = Math.floor(Math.random() * 6);
  for (let k = 0; k < others; k++) {
    t += Math.floor(Math.random() * 60);
    if (ideal <= t) wasFull = true;
    if (ok(tat, t)) {
      tat = Math.max(tat, t) + interval;
      ideal = Math.max(ideal, t) + interval;
    }
  }
  t += Math.floor(Math.random() * 10);
  if (ideal <= t) wasFull = true;
  const rolled = Math.max(tat - interval, t);
  const want = Math.max(ideal, t);
  runs++;
  const d = want - rolled; // > 0: the rolled-back bucket is more permissive than the ideal
  if (d === 0) exact++;
  else if (!wasFull) inexactNeverFull++;
  worstMore = Math.max(worstMore, d / interval);
  worstLess = Math.max(worstLess, -d / interval);
}
console.log(
  JSON.stringify({
    cases: runs,
    exact,
    worst_more_permissive_intervals: worstMore,
    worst_less_permissive_intervals: worstLess,
    inexact_although_never_full: inexactNeverFull,
  }),
);
