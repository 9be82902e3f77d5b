import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FakeProvider } from '../support/fake-provider.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, driveLoad, newAdminKey, seedProvider, services } from './helpers.js';

/**
 * Issue 14 item 5: a fresh adaptive key in front of a fast upstream that takes up to 40 concurrent
 * requests, 64 clients. Until its first concurrency 429 the key's learned limit grows
 * multiplicatively (slow start), so the upstream sees ≥ 32 concurrent requests after a few dozen
 * requests (before: +1 per 20 busy answers from 8, hundreds of requests); the first 429 drops it
 * back and AIMD (+1 steps) takes over. Counted in requests, not seconds.
 */
const UPSTREAM_LIMIT = 40;
const CLIENTS = 64;
const TARGET = 32;
/** Bounds every phase (the loop ends even when the behaviour is wrong). */
const CAP = 2000;
/**
 * What "quickly" means: 8 → 16 → 32 is two windows of 20 busy answers plus the answers in flight
 * (~70 on a quiet machine). A loaded machine stretches it (a stalled loop hands the answers back in
 * bunches, and samples taken while in flight dips do not count as busy: 258 once in a CI run next
 * to other load). Additive growth (+1 per window of 20 busy answers) needs at least 24 × 20 = 480.
 */
const QUICKLY = 320;

describe.each(MODES)('adaptive slow start (%s)', (mode) => {
  let gw: TestGateway;
  let fake: FakeProvider;
  const adminKey = newAdminKey();
  let providerId: string;
  let keyId: string;

  beforeAll(async () => {
    fake = await FakeProvider.start({ maxConcurrent: UPSTREAM_LIMIT });
    // Slow enough that the upstream's in-flight count follows the gateway's (the machine's CPU is
    // not what limits concurrency here).
    fake.when({ reply: { delayMs: 150 } });
    gw = await startGateway(mode, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      ADAPTIVE_FLUSH_MS: '200',
      ADAPTIVE_HOLD_MS: '200',
    });
    ({
      providerId,
      keyIds: [keyId],
    } = await seedProvider(
      adminClient(gw.url, adminKey),
      { name: 'fake', base_url: fake.baseUrl, models: ['gpt-4o-mini'] },
      [{ label: 'fresh', key: 'sk-fresh-1', max_concurrent: null }],
    ));
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  it(`a fresh key reaches ${TARGET} concurrent quickly, then the first 429 hands over to AIMD`, async () => {
    const s = services(gw);
    expect(gw.config.adaptive.initialLimit).toBe(8);

    // Phase 1: until the learned limit reaches TARGET (checked after every answer).
    let reachedAt: number | null = null;
    let upstreamAt: number | null = null;
    const one = await driveLoad({
      instances: [s],
      providerId,
      clients: CLIENTS,
      requests: CAP,
      until: () => reachedAt !== null,
      onAnswer: (_status, answers) => {
        if (upstreamAt === null && fake.maxInFlight >= TARGET) upstreamAt = answers;
        void s.adaptive.learnedLimits(providerId, [keyId]).then((m) => {
          if (reachedAt === null && (m.get(keyId) ?? 0) >= TARGET) reachedAt = answers;
        });
      },
    });
    const learnedAtTarget = (await s.adaptive.learnedLimits(providerId, [keyId])).get(keyId);
    console.log(
      `[slow start ${mode}] learned limit reached ${TARGET} after ${reachedAt ?? `> ${CAP}`} requests (now ${learnedAtTarget}; upstream in flight ${fake.maxInFlight} max, ${TARGET} first after ${upstreamAt ?? '-'}; upstream 429s ${one.upstream429})`,
    );
    expect(reachedAt).not.toBeNull();
    expect(reachedAt!).toBeLessThanOrEqual(QUICKLY);
    expect(one.upstream429).toBe(0);

    // Phase 2: it keeps growing until the upstream pushes back once.
    let first429At: number | null = null;
    const two = await driveLoad({
      instances: [s],
      providerId,
      clients: CLIENTS,
      requests: CAP,
      until: () => first429At !== null,
      onAnswer: (status, answers) => {
        if (first429At === null && status === 429) first429At = answers;
      },
    });
    expect(first429At).not.toBeNull();
    const afterPush = (await s.adaptive.learning([{ keyId, providerId }])).get(keyId)!;
    const decrease = afterPush.adjustments.findIndex((a) => a.new < a.old);
    expect(decrease).toBeGreaterThan(0);
    const grown = afterPush.adjustments.slice(0, decrease);
    // before the push-back: multiplicative steps only (no +1, no probe)
    expect(grown.length).toBeGreaterThanOrEqual(2);
    for (const a of grown) {
      expect(a.reason).toBe('slow_start');
      expect(a.new).toBe(Math.min(gw.config.adaptive.maxLimit, a.old * 2));
    }
    const cut = afterPush.adjustments[decrease]!;
    expect(cut.reason).toBe('concurrency_429');
    // no higher than the limit before the last doubling (that one ran busy without a 429)
    expect(cut.new).toBeLessThanOrEqual(grown[grown.length - 1]!.old);

    // Phase 3: AIMD from there — increases by one, never doubling again.
    const three = await driveLoad({ instances: [s], providerId, clients: CLIENTS, requests: 600 });
    const after = (await s.adaptive.learning([{ keyId, providerId }])).get(keyId)!;
    const later = after.adjustments.filter((a) => a.atMs > cut.atMs);
    for (const a of later) {
      expect(a.reason).not.toBe('slow_start');
      if (a.new > a.old) expect(a.new).toBe(a.old + 1);
    }
    const final = (await s.adaptive.learnedLimits(providerId, [keyId])).get(keyId)!;
    console.log(
      `[slow start ${mode}] steps ${grown.map((a) => `${a.old}→${a.new}`).join(', ')}; first upstream 429 after ${first429At} more requests (${two.upstream429} 429s in that phase), cut ${cut.old}→${cut.new} at ${cut.inFlight} in flight; next 600 requests: ${three.upstream429} upstream 429s, ${later.length} adjustments (${later.map((a) => `${a.old}→${a.new}`).join(', ')}), limit ${final}`,
    );
    // AIMD around the upstream's limit: up to one below the lowest in-flight count a 429 came back
    // at (the gateway's count, a request or two above the upstream's), then down again.
    expect(final).toBeLessThanOrEqual(UPSTREAM_LIMIT + 2);
    expect(final).toBeGreaterThanOrEqual(TARGET - 4);
  });
});
