// Probe (not part of `npm run bench`): what coalescing the answer path's releases saves in Redis
// (issue 18; src/key-pool/infrastructure/release-batcher.ts). On a private redis-server, the full
// release composition of a relayed request (lease release + the key's TPM sub-buckets + the client
// key's TPM charge riding in it + Adaptive's report contribution: 10 keys, 27 args like the
// gateway's) runs `n` times per variant: `k=1` one EVALSHA per release, `k=N` the batch form with
// N releases per call; `depth` calls in flight on the connection (1: each waits for the previous
// reply, as an idle instance sends them; 8: pipelined, as under load). Redis CPU (INFO cpu, user +
// sys) and EVALSHA usec (commandstats) per release; rounds alternate the variants' order.
// `npm run build --silent && node bench/probes/release-batch-cost.mjs [n] [rounds]`
import { startPrivateRedis } from '../sections/redis-cost.mjs';
import { closeRedis } from '../lib/gateway.mjs';
import { cleanupAll } from '../lib/procs.mjs';

const dist = new URL('../../dist/src/', import.meta.url);
const { releaseScript, encodeRelease, encodeReleaseBatch } = await import(
  new URL('key-pool/infrastructure/release.script.js', dist)
);
const { ADAPTIVE_REPORT, encodeReport } = await import(
  new URL('adaptive/infrastructure/report.script.js', dist)
);
const { TOKEN_CHARGE_STEP } = await import(new URL('rate-limit/rate-limit.service.js', dist));

const n = Number(process.argv[2] ?? 4000);
const rounds = Number(process.argv[3] ?? 3);
const variants = [
  [1, 1],
  [8, 1],
  [1, 8],
  [2, 8],
  [4, 8],
  [8, 8],
];
const script = releaseScript(ADAPTIVE_REPORT, TOKEN_CHARGE_STEP);
const retreat = {
  windowMs: 10_000,
  minSamples: 20,
  enterPermyriad: 1000,
  exitPermyriad: 200,
  holdMs: 30_000,
  factorPermille: 500,
  minFactorPermille: 100,
  stepPermille: 100,
  stepMs: 5000,
  baseRpm: 0,
  enabled: true,
};
let seq = 0;
function input(i) {
  const keyId = `k${i % 4}`;
  return encodeRelease({
    providerId: 'p',
    keyId,
    leaseId: `lease-${seq++}`,
    tokens: 40,
    cooldownMs: 0,
    notSent: false,
    hashTtlMs: 86_400_000,
    tpmBuckets: true,
    contribution: encodeReport({ providerId: 'p', keyId, answers: 1, rate429s: 0, retreat, learn: null }),
    rider: { keys: ['rl:{key:c}:tpm:log', 'rl:{key:c}:tpm:sum'], args: [`m${seq}:40`, 40, 60_000] },
  });
}

const redis = await startPrivateRedis();
const c = redis.client;
try {
  const sha1 = await c.script('load', script.lua);
  const shaN = await c.script('load', script.batch.lua);
  const cpu = async () => {
    const info = await c.info('cpu');
    const v = (k) => Number(new RegExp(`${k}:([\\d.]+)`).exec(info)[1]);
    return (v('used_cpu_user') + v('used_cpu_sys')) * 1e6;
  };
  const evalshaUsec = async () => {
    const s = await c.info('commandstats');
    return Number(/cmdstat_evalsha:calls=\d+,usec=(\d+)/.exec(s)?.[1] ?? 0);
  };
  async function run([k, depth]) {
    // the client key's log is dropped between variants so it stays small (as in a 60-s window)
    await c.del('rl:{key:c}:tpm:log', 'rl:{key:c}:tpm:sum');
    const cpu0 = await cpu();
    const us0 = await evalshaUsec();
    let inFlight = [];
    for (let i = 0; i < n; i += k) {
      if (k === 1) inFlight.push(c.evalsha(sha1, ...flat(input(i))));
      else
        inFlight.push(
          c.evalsha(shaN, ...flat(encodeReleaseBatch(Array.from({ length: k }, (_, j) => input(i + j))))),
        );
      if (inFlight.length >= depth) {
        await Promise.all(inFlight);
        inFlight = [];
      }
    }
    await Promise.all(inFlight);
    const us = (await evalshaUsec()) - us0;
    const used = (await cpu()) - cpu0;
    return { cpu: used / n, evalsha: us / n };
  }
  const flat = ({ keys, args }) => [keys.length, ...keys, ...args];
  for (const v of variants) await run(v); // warm-up
  const results = new Map(variants.map((v) => [v, []]));
  for (let r = 0; r < rounds; r++) {
    const order = r % 2 === 0 ? variants : [...variants].reverse();
    for (const v of order) results.get(v).push(await run(v));
  }
  const med = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
  console.log(
    `| releases per call | calls in flight | Redis CPU µs / release (median; rounds) | EVALSHA µs / release |`,
  );
  console.log(`| ---: | ---: | ---: | ---: |`);
  for (const v of variants) {
    const cpus = results.get(v).map((x) => x.cpu);
    const evs = results.get(v).map((x) => x.evalsha);
    console.log(
      `| ${v[0]} | ${v[1]} | ${med(cpus).toFixed(1)} (${cpus.map((x) => x.toFixed(0)).join(', ')}) | ${med(evs).toFixed(1)} |`,
    );
  }
} finally {
  await redis.close();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
