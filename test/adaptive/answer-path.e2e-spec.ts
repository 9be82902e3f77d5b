import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AtomicStore } from '../../src/state/atomic-store.js';
import { FakeProvider } from '../support/fake-provider.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';
import { adminClient, driveLoad, newAdminKey, seedProvider, services } from './helpers.js';

/**
 * Issue 18: the answer path is one store step. Every report of an upstream answer — release the
 * lease, charge tokens, Adaptive's retreat window and state machine, and the learning step when
 * the answer calls for one — runs as ONE atomic script (KeyPool's release with Adaptive's report
 * contribution composed in): one EVALSHA in distributed mode. Uncontended, every answer rides in
 * its own release; under concurrency an answer may wait for the next release of its provider (or
 * a flush 20 ms later), but every answer reaches the window exactly once.
 */
describe.each(MODES)('answer path in one store step (%s)', (mode) => {
  let gw: TestGateway;
  let fake: FakeProvider;
  const adminKey = newAdminKey();
  let providerId: string;
  let keyId: string;
  const steps: string[] = [];
  let batches = 0;

  beforeAll(async () => {
    fake = await FakeProvider.start({ maxConcurrent: 2 });
    fake.when({ reply: { delayMs: 5 } });
    gw = await startGateway(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, ADAPTIVE_FLUSH_MS: '60000' });
    ({
      providerId,
      keyIds: [keyId],
    } = await seedProvider(
      adminClient(gw.url, adminKey),
      { name: 'fake', base_url: fake.baseUrl, models: ['gpt-4o-mini'] },
      [{ label: 'adaptive', key: 'sk-adaptive-1', max_concurrent: null }],
    ));
    // record every store step this instance runs
    const store = gw.app.get(AtomicStore);
    const run = store.run.bind(store);
    // a batch of releases (ReleaseBatcher: the releases that arrived while one was in flight, sent
    // as one call) counts as its releases, each under its script's name
    store.run = ((script, keys, args) => {
      if (script.name.endsWith('*batch')) {
        batches++;
        for (let i = 0; i < Number(args[0]); i++) steps.push(script.name.slice(0, -'*batch'.length));
      } else steps.push(script.name);
      return run(script, keys, args);
    }) as AtomicStore['run'];
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  const count = (name: string) => steps.filter((s) => s === name).length;
  const answerPathSteps = () =>
    steps.filter((s) => !s.startsWith('keypool-select') && s !== 'adaptive-retreat-snapshot');

  it('uncontended: one store step per answer, carrying the window (no separate retreat or learning script)', async () => {
    const s = services(gw);
    steps.length = 0;
    const r = await driveLoad({ instances: [s], providerId, clients: 1, requests: 40 });
    expect(r.statuses.every((x) => x === 200)).toBe(true);
    expect(count('keypool-select')).toBe(40);
    expect(answerPathSteps()).toEqual(Array(40).fill('keypool-release+adaptive-report'));
    const status = await s.adaptive.retreatStatus(providerId);
    expect(status.window_answers).toBe(40);
  });

  it('under concurrency with 429s: the learning step rides in the release; every answer reaches the window once', async () => {
    const s = services(gw);
    steps.length = 0;
    batches = 0;
    const r = await driveLoad({ instances: [s], providerId, clients: 8, requests: 160 });
    expect(r.upstream429).toBeGreaterThan(0);
    const path = answerPathSteps();
    // no learning or retreat script of its own: only releases (plain when an answer waits for the
    // next one), and at most a few flushes of answers no release took along
    expect(new Set(path)).toEqual(
      new Set(
        path.filter((n) =>
          ['keypool-release+adaptive-report', 'keypool-release', 'adaptive-retreat-record'].includes(n),
        ),
      ),
    );
    expect(count('adaptive-learn')).toBe(0);
    // one release per answer, plus the occasional lease given back unused (a dispatch whose popped
    // job had already expired or gone): those carry no answer, which the window count below shows
    const releases = count('keypool-release+adaptive-report') + count('keypool-release');
    expect(releases).toBeGreaterThanOrEqual(160);
    expect(releases).toBeLessThanOrEqual(170);
    const status = await s.adaptive.retreatStatus(providerId);
    expect(status.window_answers).toBe(200);
    const learned = (await s.adaptive.learnedLimits(providerId, [keyId])).get(keyId);
    expect(learned).not.toBeNull();
    expect(learned!).toBeLessThanOrEqual(4);
    console.log(
      `[answer path ${mode}] 160 answers (${r.upstream429} 429s): ${count('keypool-release+adaptive-report')} releases carrying Adaptive's step, ${count('keypool-release')} plain, ${count('adaptive-retreat-record')} flushes, ${batches} batch calls; learned limit ${learned}`,
    );
  });
});
