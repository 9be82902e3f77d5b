import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AdmissionService } from '../../src/relay/admission.service.js';
import { RelayDispatcher } from '../../src/relay/dispatcher.js';
import { LeaseKeeper } from '../../src/relay/stages/lease-keeper.js';
import { MODES } from '../support/gateway.js';
import { startRelay, type RelayFixture } from '../support/relay.js';

/**
 * A routed request that waits in several queues at once withdraws the other waits (one shared
 * abort) when one grants. The dispatcher must give back a grant that crosses the withdrawal: the
 * slot freed, handed to the waiting job in the same store step as the release, while the wait is
 * aborted right behind it. Here the crossing is made deterministic: the wait is aborted the moment
 * the dispatch step has been sent (its script pops the job), before its reply — and so the grant —
 * comes back; the aborted wait's removal then finds the job gone, and the grant arrives late.
 */
describe.each(MODES)('a grant that crosses a withdrawn wait is given back (%s mode)', (mode) => {
  let fx: RelayFixture;
  beforeAll(async () => {
    fx = await startRelay(mode, { keys: [{ key: 'sk-cross', max_concurrent: 1 }] });
  });
  afterAll(async () => {
    await fx?.close();
  });

  it('the wait answers aborted, and the slot is free again (not held until its lease expires)', async () => {
    const admission = fx.gw.app.get(AdmissionService);
    const dispatcher = fx.gw.app.get(RelayDispatcher);
    const leases = fx.gw.app.get(LeaseKeeper);
    const held = await admission.tryAcquire(fx.providerId, 3, false);
    expect(held.ok).toBe(true);
    if (!held.ok) return;
    expect((await admission.tryAcquire(fx.providerId, 3, true)).ok).toBe(false); // the one slot is taken
    const stop = new AbortController();
    const waiting = dispatcher.wait(fx.providerId, 3, {
      requestId: 'crossing',
      timeoutMs: 10_000,
      agingMs: 0,
      signal: stop.signal,
    });
    for (let i = 0; i < 200 && ((await dispatcher.depth(fx.providerId))[3] ?? 0) === 0; i++)
      await new Promise((r) => setTimeout(r, 10));
    expect((await dispatcher.depth(fx.providerId))[3]).toBe(1);
    const granted = dispatcher.granted;
    // The next dispatch step: sent, then the wait withdrawn before its reply is read.
    const prepare = admission.prepareDispatch.bind(admission);
    admission.prepareDispatch = async (...args) => {
      const attempt = await prepare(...args);
      const run = attempt.run.bind(attempt);
      attempt.run = () => {
        const reply = run();
        stop.abort();
        return reply;
      };
      return attempt;
    };
    let result;
    try {
      // The release hands the slot to the queued job (the dispatch step right behind the report).
      await leases.release(held.lease, { status: 200 });
      result = await waiting;
    } finally {
      admission.prepareDispatch = prepare;
    }
    expect(result.kind).toBe('aborted');
    expect(dispatcher.granted).toBe(granted + 1); // the job was granted: the grant crossed the abort
    // Given back: the slot can be taken again at once.
    let again = await admission.tryAcquire(fx.providerId, 3, true);
    for (let i = 0; i < 100 && !again.ok; i++) {
      await new Promise((r) => setTimeout(r, 20));
      again = await admission.tryAcquire(fx.providerId, 3, true);
    }
    expect(again.ok).toBe(true);
    if (again.ok) await leases.release(again.lease, { notSent: true });
  });
});
