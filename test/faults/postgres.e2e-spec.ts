import { randomBytes } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import {
  addProvider,
  chat,
  FaultProxy,
  leakProblems,
  pollUntil,
  requestLogRows,
  sleep,
  spawnLive,
  type RelayAnswer,
} from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { isolatedEnv, type GatewayProcess } from '../support/gateway.js';
import { TEST_POSTGRES_URL } from '../support/services.js';

/**
 * Postgres restarts under load: every connection through the proxy is reset and new ones are refused
 * for 3 s, then accepted again. The gateway is a real process (`node dist/src/main.js`); its
 * DATABASE_URL goes through the proxy and carries a canary password (the test server trusts local
 * connections, so any password works).
 *
 * Pass criteria: nothing answers 500; a request that needs Postgres during the outage (an API key
 * not in the credential cache, an admin read) answers 503 in the error shape with Retry-After and no
 * secret or stack; relayed requests are served or 503; recovery (admin read and /health/ready 200)
 * ≤ 10 s after Postgres is back; every request answered 200 has its request_log row once the writer
 * has flushed (no row lost); the process never crashes.
 */

const OUTAGE_MS = 3000;
const CANARY_PASSWORD = `canary-pw-${randomBytes(6).toString('hex')}`;

interface Probe {
  kind: 'chat' | 'fresh-key' | 'admin';
  startedAt: number;
  endedAt: number;
  status: number;
  text: string;
  retryAfter: string | null;
  requestId?: string;
}

describe('Postgres restart under load (real process)', () => {
  let proxy: FaultProxy;
  let fake: FakeProvider;
  let gw: GatewayProcess;
  let cleanup: () => Promise<void>;
  let env: Record<string, string>;
  const adminKey = newApiKey();

  beforeAll(async () => {
    proxy = await FaultProxy.start(TEST_POSTGRES_URL);
    fake = await FakeProvider.start();
    fake.when({ reply: { delayMs: 20 } });
    const isolated = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '1000000',
      RATE_LIMIT_USER_RPM: '1000000',
      RATE_LIMIT_IP_RPM: '1000000',
      RATE_LIMIT_TIMEOUT_MS: '2000',
    });
    cleanup = isolated.cleanup;
    const db = new URL(proxy.url(isolated.env.DATABASE_URL!));
    db.password = CANARY_PASSWORD;
    env = { ...isolated.env, DATABASE_URL: db.toString() };
    gw = await spawnLive(env);
  });
  afterAll(async () => {
    await proxy?.revive().catch(() => undefined);
    await gw?.stop();
    await proxy?.close();
    await fake?.close();
    await cleanup?.();
  });

  it(`connections reset and refused for ${OUTAGE_MS / 1000} s: 503 not 500, no secret, recovery ≤ 10 s, no request_log row lost`, async () => {
    await addProvider(gw, adminKey, fake, [{ key: 'sk-pg-fault-upstream', max_concurrent: 50 }]);
    const client = await createUserWithKey(gw, adminKey, 'developer', { key: { limits: { rpm: 100000 } } });
    expect((await chat(gw.url, client.key, 'warm')).status).toBe(200);

    const probes: Probe[] = [];
    let stop = false;
    const record = async (
      kind: Probe['kind'],
      run: () => Promise<Omit<Probe, 'kind' | 'startedAt' | 'endedAt'>>,
    ) => {
      const startedAt = performance.now();
      try {
        const r = await run();
        probes.push({ kind, startedAt, endedAt: performance.now(), ...r });
      } catch (err) {
        probes.push({
          kind,
          startedAt,
          endedAt: performance.now(),
          status: -1,
          text: String(err),
          retryAfter: null,
        });
      }
    };
    const asProbe = (a: RelayAnswer) => ({
      status: a.status,
      text: a.text,
      retryAfter: a.headers.get('retry-after'),
      requestId: a.requestId,
    });
    const call = async (path: string, key: string) => {
      const res = await fetch(`${gw.url}${path}`, { headers: bearer(key, false) });
      return { status: res.status, text: await res.text(), retryAfter: res.headers.get('retry-after') };
    };
    const loops = [
      // relayed chats with a cached client key
      ...[0, 1, 2].map(async (w) => {
        for (let i = 0; !stop; i++)
          await record('chat', async () => asProbe(await chat(gw.url, client.key, `pg-${w}-${i}`)));
      }),
      // an API key no cache has seen: verifying it needs Postgres
      (async () => {
        while (!stop) {
          await record('fresh-key', () => call('/api/me', newApiKey()));
          await sleep(100);
        }
      })(),
      // an admin read: needs Postgres
      (async () => {
        while (!stop) {
          await record('admin', () => call('/api/admin/api-keys?limit=1', adminKey));
          await sleep(100);
        }
      })(),
    ];

    await sleep(1000);
    const killedAt = performance.now();
    await proxy.kill();
    await sleep(OUTAGE_MS);
    await proxy.revive();
    const backAt = performance.now();
    const { ms: recoveryMs } = await pollUntil(
      async () => {
        const [admin, ready] = await Promise.all([
          call('/api/admin/api-keys?limit=1', adminKey),
          fetch(`${gw.url}/health/ready`).then(async (r) => (await r.arrayBuffer(), r.status)),
        ]);
        return admin.status === 200 && ready === 200;
      },
      { timeoutMs: 15_000, intervalMs: 100, what: 'the admin API and /health/ready to answer 200 again' },
    );
    await sleep(1000);
    stop = true;
    await Promise.all(loops);
    expect(gw.proc.exitCode, `the gateway crashed:\n${gw.output().slice(-3000)}`).toBeNull();

    const during = (p: Probe) => p.startedAt > killedAt + 100 && p.endedAt < backAt;
    const summary = (kind: Probe['kind'], filter: (p: Probe) => boolean) =>
      Object.entries(
        probes
          .filter((p) => p.kind === kind && filter(p))
          .reduce<Record<number, number>>((acc, p) => ((acc[p.status] = (acc[p.status] ?? 0) + 1), acc), {}),
      )
        .map(([s, n]) => `${s}×${n}`)
        .join(' ');
    console.log(
      `[faults] postgres outage: chats ${summary('chat', during)}; fresh keys ${summary('fresh-key', during)}; admin ${summary('admin', during)}; ` +
        `recovery ${recoveryMs.toFixed(0)} ms after Postgres returned`,
    );

    const tally = (list: Probe[]) =>
      Object.entries(
        list.reduce<Record<string, number>>((acc, p) => {
          const key = `${p.kind} ${p.status}${p.status >= 400 || p.status < 0 ? ` ${errorCode(p.text)}` : ''}`;
          acc[key] = (acc[key] ?? 0) + 1;
          return acc;
        }, {}),
      ).map(([k, n]) => `${k} ×${n}`);
    // what the gateway logged for any 500 (the cause, for the report)
    const causes = new Set<string>();
    for (const line of gw.output().split('\n')) {
      if (!line.includes('unhandled error answered with 500')) continue;
      try {
        const l = JSON.parse(line) as {
          route?: string;
          err?: { type?: string; message?: string; stack?: string };
        };
        const at = l.err?.stack?.split('\n').find((x) => x.includes('/src/')) ?? '';
        causes.add(`${l.route}: ${l.err?.type} "${l.err?.message}" ${at.trim()}`);
      } catch {
        // not a JSON line
      }
    }
    if (causes.size > 0)
      console.log(
        `[faults] postgres outage: 500 causes logged by the gateway:\n  ${[...causes].join('\n  ')}`,
      );
    // Each criterion is checked (soft) so one run reports all of them.
    // the outage was real: requests needing Postgres were made during it
    expect.soft(probes.filter((p) => p.kind === 'admin' && during(p)).length).toBeGreaterThan(3);
    expect.soft(probes.filter((p) => p.kind === 'fresh-key' && during(p)).length).toBeGreaterThan(3);
    // never a 500 (nor a dropped connection), before, during or after
    expect.soft(tally(probes.filter((p) => p.status === 500 || p.status === -1)), 'no 500').toEqual([]);
    // needing Postgres while it is gone → 503
    expect
      .soft(
        tally(probes.filter((p) => p.kind !== 'chat' && during(p) && p.status !== 503)),
        'needs Postgres → 503',
      )
      .toEqual([]);
    // relayed requests: served (from caches) or 503
    expect
      .soft(
        tally(probes.filter((p) => p.kind === 'chat' && p.status !== 200 && p.status !== 503)),
        'chats: 200 or 503',
      )
      .toEqual([]);
    // every error answer (503s, and any 500): the error shape, no secret, no stack; 503s carry Retry-After
    const secrets = [
      CANARY_PASSWORD,
      env.DATABASE_URL!,
      adminKey,
      client.key,
      'sk-pg-fault-upstream',
      env.ENCRYPTION_KEYS!.split(':')[1]!,
    ];
    const leaks = probes.filter((x) => x.status >= 500).flatMap((p) => leakProblems(p.text, secrets));
    expect.soft([...new Set(leaks)], 'error bodies leak nothing').toEqual([]);
    expect
      .soft(
        tally(probes.filter((x) => x.status === 503 && !(Number(x.retryAfter) >= 1))),
        '503 with Retry-After',
      )
      .toEqual([]);
    const ready = await fetch(`${gw.url}/health/ready`);
    expect
      .soft(
        leakProblems(
          JSON.stringify({ error: { type: 'x', code: 'x', message: await ready.text() } }),
          secrets,
        ),
      )
      .toEqual([]);
    expect.soft(recoveryMs, 'recovery ≤ 10 s').toBeLessThanOrEqual(10_000);

    // no lost request_log row: every chat answered 200 is in the table once the writer has flushed
    const okIds = probes.filter((p) => p.kind === 'chat' && p.status === 200).map((p) => p.requestId!);
    expect(okIds.length).toBeGreaterThan(10);
    const { value: missing, ms: flushMs } = await pollUntil(
      async () => {
        const rows = await requestLogRows(env.DATABASE_URL!, okIds);
        const absent = okIds.filter((id) => !rows.has(id));
        return absent.length === 0 ? absent : false;
      },
      { timeoutMs: 10_000, intervalMs: 250, what: `request_log rows for all ${okIds.length} answered chats` },
    ).catch(async (err: Error) => {
      const rows = await requestLogRows(env.DATABASE_URL!, okIds);
      return { value: okIds.filter((id) => !rows.has(id)), ms: NaN, err };
    });
    console.log(
      `[faults] request_log: ${okIds.length - missing.length}/${okIds.length} rows of 200 answers present (${flushMs.toFixed(0)} ms after load)`,
    );
    expect.soft(missing, 'no request_log row lost').toEqual([]);
  });
});

function errorCode(text: string): string {
  try {
    return String((JSON.parse(text) as { error?: { code?: string } }).error?.code);
  } catch {
    return text.slice(0, 60);
  }
}
