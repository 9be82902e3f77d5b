import { Redis } from 'ioredis';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { retreatArgv, retreatRecordScript } from '../../src/adaptive/infrastructure/report.script.js';
import { dropRedisPrefix, TEST_REDIS_URL, uniqueName } from '../support/services.js';

/**
 * Adaptive's answer window keeps its totals N/E in the hash (report.lua, field c = '<slot>:<windowMs>')
 * so that an answer within a slot costs an HMGET and HINCRBYs instead of reading every slot. This
 * runs answers through the Lua against a real Redis across many slot boundaries (a 200 ms window:
 * 20 ms slots) and checks after each answer that the totals the script used equal a full recount of
 * the stored slots at the script's slot — what the script computed before the totals existed.
 */
describe('retreat window totals ≡ the sum of its slots (Lua, real Redis)', () => {
  let client: Redis;
  const prefix = uniqueName('fgrw');
  let sha = '';
  beforeAll(async () => {
    client = new Redis(TEST_REDIS_URL);
    sha = (await client.script('LOAD', retreatRecordScript.lua)) as string;
  });
  afterAll(async () => {
    await dropRedisPrefix(prefix);
    client?.disconnect();
  });

  it('600 answers, 429s among them, with pauses longer than the window', async () => {
    const windowMs = 200;
    const rt = `${prefix}:rt`;
    const rw = `${prefix}:rw`;
    const args = (e: number) =>
      retreatArgv(1, e, {
        windowMs,
        minSamples: 1_000_000, // never enters RETREAT: only the window is under test
        enterPermyriad: 1000,
        exitPermyriad: 500,
        holdMs: 1000,
        factorPermille: 500,
        minFactorPermille: 50,
        stepPermille: 100,
        stepMs: 1000,
        baseRpm: 0,
        enabled: true,
      });
    let fast = 0;
    let slow = 0;
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let k = 0; k < 600; k++) {
      const before = await client.hget(rw, 'c');
      const e = rnd() < 0.2 ? 1 : 0;
      const reply = (await client.evalsha(sha, 2, rt, rw, ...args(e).map(String))) as unknown[];
      const h = await client.hgetall(rw);
      const [cur] = h.c!.split(':').map(Number) as [number];
      if (before === h.c) fast++;
      else slow++;
      let N = 0;
      let E = 0;
      for (let j = 0; j < 10; j++) {
        const sid = Number(h[`s${j}`] ?? NaN);
        if (sid > cur - 10 && sid <= cur) {
          N += Number(h[`n${j}`]);
          E += Number(h[`e${j}`] ?? 0);
        }
      }
      expect([Number(reply[2]), Number(reply[3])]).toEqual([N, E]);
      expect([Number(h.N), Number(h.E)]).toEqual([N, E]);
      if (rnd() < 0.01) await new Promise((r) => setTimeout(r, windowMs + 50));
      else if (rnd() < 0.2) await new Promise((r) => setTimeout(r, 5));
    }
    expect(fast).toBeGreaterThan(50);
    expect(slow).toBeGreaterThan(20);
  }, 60_000);
});
