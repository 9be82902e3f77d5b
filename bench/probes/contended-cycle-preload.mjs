// Preload for bench/probes/contended-cycle.mjs (bench only; never loaded in production): time marks
// of the contended path's slot cycle inside one gateway, written as JSON to $CYCLE_OUT at exit.
// Every mark is process.hrtime in ms (CLOCK_MONOTONIC: the same clock in every process on the
// machine, so the fake upstream's arrivals/finishes and both instances' marks share one time line).
//   upDone    undici: the upstream's answer complete (the gateway knows the slot is free)
//   release   LeaseKeeper.release called (the answer was sent to the client; the report goes now)
//   handoff   RelayDispatcher.capacityReleased (the hand-off step about to be prepared)
//   dispatch  RelayDispatcher.dispatchOnce called (from the hand-off or a waiter's loop: `loop`)
//   settled   a dispatch step's answer read (its kind: served / empty / wait)
//   grantMsg  a grant arrived over pub/sub (RelayDispatcher.onGrant)
//   deliver   a grant handed to its waiter (RelayDispatcher.deliver)
//   woken     a waiter's wait() returned (granted)
//   upSend    undici: the upstream request's headers written
//   account   AccountStage.account [start, end]; reportAfter: KeyPoolService.report [called, settled]
//   kToS      per woken waiter: [write time, woken→write, accountings inside, their ms, reports settled inside]
//   handoffToWrite / dispatchDur  (CYCLE_REDIS_PORT) the hand-off's first Redis write; a hand-off step's own time
//   eld       (CYCLE_ELD=1) event-loop stretches over 3 ms
import dc from 'node:diagnostics_channel';
import { writeFileSync } from 'node:fs';
import net from 'node:net';

const out = process.env.CYCLE_OUT;
const dist = process.env.CYCLE_DIST; // absolute path of the build's src/ directory
const now = () => Number(process.hrtime.bigint()) / 1e6;
const marks = {
  upDone: [], release: [], handoff: [], dispatch: [], loopDispatch: [], settled: [], grantMsg: [],
  deliver: [], woken: [], upSend: [], waitStart: [], eld: [], account: [], reportAfter: [],
};
// Redis traffic (CYCLE_REDIS_PORT): when bytes were written to / read from a Redis socket
const redisPort = Number(process.env.CYCLE_REDIS_PORT ?? 0);
marks.redisWrite = [];
marks.handoffToWrite = [];
marks.dispatchDur = [];
let handoffAt = null;
marks.redisRead = [];
if (redisPort) {
  for (const m of ['_writev', '_write']) {
    const orig = net.Socket.prototype[m];
    net.Socket.prototype[m] = function (...a) {
      if (this.remotePort === redisPort) {
        const t = now();
        marks.redisWrite.push(t);
        // the first Redis write after a hand-off started: its release + dispatch leave (corked until the check phase)
        if (handoffAt !== null) {
          marks.handoffToWrite.push([t, t - handoffAt]);
          handoffAt = null;
        }
      }
      return orig.apply(this, a);
    };
  }
  const emit = net.Socket.prototype.emit;
  net.Socket.prototype.emit = function (ev, ...a) {
    if (ev === 'data' && this.remotePort === redisPort) marks.redisRead.push(now());
    return emit.call(this, ev, ...a);
  };
}
// Was the current dispatchOnce called from capacityReleased (the hand-off) or from a loop?
let inHandoff = false;
// woken waiters whose upstream write has not been seen yet (index into marks.woken) → for the
// woken→write interval: what else ran in between (accounting of other requests, report tails)
const wokenPending = [];
marks.kToS = [];
const upstream = (request) => request?.path?.startsWith('/v1/');
dc.subscribe('undici:request:trailers', ({ request }) => { if (upstream(request)) marks.upDone.push(now()); });
dc.subscribe('undici:client:sendHeaders', ({ request }) => {
  if (!upstream(request)) return;
  const t = now();
  marks.upSend.push(t);
  // oldest woken waiter: its interval, with the accounting and report tails that ran inside it
  const i = wokenPending.shift();
  if (i === undefined) return;
  const k = marks.woken[i];
  let acc = 0;
  let accN = 0;
  for (let j = marks.account.length - 1; j >= 0 && marks.account[j][0] >= k; j--) {
    acc += marks.account[j][1] - marks.account[j][0];
    accN++;
  }
  let rep = 0;
  for (let j = marks.reportAfter.length - 1; j >= 0 && marks.reportAfter[j][1] >= k; j--) rep++;
  marks.kToS.push([t, t - k, accN, acc, rep]);
});
if (dist) {
  const patch = async (file, cls, method, fn) => {
    const m = await import(`${dist}/${file}`);
    const orig = m[cls].prototype[method];
    if (typeof orig !== 'function') throw new Error(`contended-cycle-preload: ${cls}.${method} not found`);
    m[cls].prototype[method] = function (...a) {
      return fn.call(this, orig, a);
    };
  };
  await patch('relay/stages/lease-keeper.js', 'LeaseKeeper', 'release', function (orig, a) {
    marks.release.push(now());
    return orig.apply(this, a);
  });
  // the relay's accounting of a finished request (AccountStage.account: [start, end])
  await patch('relay/stages/account.stage.js', 'AccountStage', 'account', function (orig, a) {
    const t = now();
    try {
      return orig.apply(this, a);
    } finally {
      marks.account.push([t, now()]);
    }
  });
  // a release's report settled (everything behind the store's answer done): [start, end]
  await patch('key-pool/services/key-pool.service.js', 'KeyPoolService', 'report', function (orig, a) {
    const t = now();
    const p = orig.apply(this, a);
    p.then(() => marks.reportAfter.push([t, now()]), () => undefined);
    return p;
  });
  await patch('relay/dispatcher.js', 'RelayDispatcher', 'capacityReleased', function (orig, a) {
    marks.handoff.push(now());
    handoffAt ??= now();
    inHandoff = true;
    try {
      return orig.apply(this, a);
    } finally {
      inHandoff = false;
    }
  });
  await patch('relay/dispatcher.js', 'RelayDispatcher', 'dispatchOnce', function (orig, a) {
    const t0 = now();
    (inHandoff ? marks.dispatch : marks.loopDispatch).push(t0);
    const p = orig.apply(this, a);
    // a hand-off step's own time: called → its answer read and settled (the job's grant delivered or published)
    if (inHandoff) p.then((step) => marks.dispatchDur.push([t0, now() - t0, step.kind]), () => undefined);
    p.then((step) => marks.settled.push([now(), step.kind, step.ms ?? 0]), () => marks.settled.push([now(), 'error', 0]));
    return p;
  });
  await patch('relay/dispatcher.js', 'RelayDispatcher', 'onGrant', function (orig, a) {
    marks.grantMsg.push(now());
    return orig.apply(this, a);
  });
  await patch('relay/dispatcher.js', 'RelayDispatcher', 'deliver', function (orig, a) {
    marks.deliver.push(now());
    return orig.apply(this, a);
  });
  await patch('relay/dispatcher.js', 'RelayDispatcher', 'wait', function (orig, a) {
    marks.waitStart.push(now());
    const p = orig.apply(this, a);
    p.then((r) => {
      if (r.kind !== 'granted') return;
      marks.woken.push(now());
      // the upstream write of this request: undici's first sendHeaders after this point
      wokenPending.push(marks.woken.length - 1);
    }, () => undefined);
    return p;
  });
}
// event-loop stalls (CYCLE_ELD=1; its 1 ms timer adds wake-ups of its own): lateness above 2 ms
if (process.env.CYCLE_ELD) {
  let last = now();
  setInterval(() => {
    const t = now();
    if (t - last > 3) marks.eld.push([last, t - last - 1]);
    last = t;
  }, 1).unref();
}
process.on('exit', () => { if (out) writeFileSync(out, JSON.stringify(marks)); });
