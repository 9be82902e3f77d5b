import { describe, expect, it } from 'vitest';
import { GuardedProbe } from './probe.js';

describe('GuardedProbe', () => {
  it('reports up with a latency when the ping answers', async () => {
    const r = await new GuardedProbe(() => Promise.resolve('PONG'), 100).run();
    expect(r.ok).toBe(true);
    expect(r.latencyMs).toBeGreaterThanOrEqual(0);
  });

  it('reports down at the deadline when the ping hangs, and at once while it still hangs', async () => {
    let release!: () => void;
    const probe = new GuardedProbe(() => new Promise<void>((resolve) => (release = resolve)), 50);
    const first = await probe.run();
    expect(first).toMatchObject({ ok: false, message: 'no answer within 50 ms' });
    expect(first.latencyMs).toBeGreaterThanOrEqual(45);
    const second = await probe.run();
    expect(second).toMatchObject({ ok: false, message: 'previous ping has not answered yet', latencyMs: 0 });
    release();
    await new Promise((r) => setTimeout(r, 0));
    expect((await probe.run()).ok).toBe(false); // a new ping that hangs again (release was for the first)
  });

  it('shares one ping between probes that arrive while it is in flight', async () => {
    let pings = 0;
    const probe = new GuardedProbe(async () => {
      pings++;
      await new Promise((r) => setTimeout(r, 20));
    }, 1000);
    const results = await Promise.all([probe.run(), probe.run(), probe.run()]);
    expect(results.map((r) => r.ok)).toEqual([true, true, true]);
    expect(pings).toBe(1);
  });

  it('reports the error of a failing ping', async () => {
    const r = await new GuardedProbe(() => Promise.reject(new Error('ECONNREFUSED')), 100).run();
    expect(r).toMatchObject({ ok: false, message: 'ECONNREFUSED' });
  });
});
