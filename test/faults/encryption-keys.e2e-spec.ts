import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { newApiKey } from '../support/auth.js';
import { addProvider, chat, dropClientConnections, spawnLive, startInstance } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import {
  freePort,
  isolatedEnv,
  spawnGateway,
  type GatewayProcess,
  type TestGateway,
} from '../support/gateway.js';

/**
 * Issue 13 item 7: replicas sharing one database must share the encryption key material. Two
 * development instances each generating their own ENCRYPTION_KEYS (same id `dev1`, other bytes):
 * the second must refuse to start (exit 2, naming ENCRYPTION_KEYS and the id, never the material)
 * instead of marking every upstream key broken for everyone. And a replica that lacks a key id
 * another replica announced (a rolling rotation) never marks the rows sealed under it broken.
 */
describe('encryption keys shared by replicas', () => {
  let fake: FakeProvider;
  const cleanups: (() => Promise<unknown>)[] = [];

  beforeAll(async () => {
    fake = await FakeProvider.start();
  });
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c().catch(() => undefined);
    await fake?.close();
  });

  const keyStates = async (databaseUrl: string): Promise<string[]> => {
    const db = new pg.Client({ connectionString: databaseUrl });
    await db.connect();
    try {
      const r = await db.query<{ label: string; broken: boolean }>(
        `SELECT label, broken_at IS NOT NULL AS broken FROM provider_keys ORDER BY label`,
      );
      return r.rows.map((x) => `${x.label}:${x.broken ? 'broken' : 'ok'}`);
    } finally {
      await db.end();
    }
  };

  it('two development processes with their own generated ENCRYPTION_KEYS: the second exits 2 and no key is marked broken', async () => {
    const adminKey = newApiKey();
    const { env, cleanup } = await isolatedEnv('distributed', { ADMIN_BOOTSTRAP_KEY: adminKey });
    cleanups.push(cleanup);
    delete env.ENCRYPTION_KEYS; // each process generates its own into its DATA_DIR (id dev1)
    const dirA = await mkdtemp(join(tmpdir(), 'fg-enc-a-'));
    const dirB = await mkdtemp(join(tmpdir(), 'fg-enc-b-'));
    cleanups.push(() => rm(dirA, { recursive: true, force: true }));
    cleanups.push(() => rm(dirB, { recursive: true, force: true }));

    const a = await spawnLive({ ...env, DATA_DIR: dirA });
    cleanups.push(() => a.stop());
    await addProvider({ url: a.url }, adminKey, fake, [{ key: 'sk-enc-one' }, { key: 'sk-enc-two' }]);
    expect((await chat(a.url, adminKey, 'a-before')).status).toBe(200);

    const b: GatewayProcess = spawnGateway({ ...env, DATA_DIR: dirB, PORT: String(await freePort()) });
    cleanups.push(() => b.stop());
    const outcome = await Promise.race([
      b.exited.then((code) => `exit ${code}`),
      (async () => {
        for (let i = 0; i < 300; i++) {
          const res = await fetch(`${b.url}/health/live`).catch(() => null);
          if (res?.status === 200) return 'listening';
          await new Promise((r) => setTimeout(r, 100));
        }
        return 'neither';
      })(),
    ]);
    if (outcome === 'listening') {
      // The damage the issue reports: one request through B marks A's keys broken for everyone.
      await chat(b.url, adminKey, 'b-request');
    }
    const materialB = (
      JSON.parse(await readFile(join(dirB, 'secrets.json'), 'utf8')) as { ENCRYPTION_KEYS: string }
    ).ENCRYPTION_KEYS.split(':')[1]!;
    console.log(`[faults] second instance with other dev1 material: ${outcome}`);
    console.log(`[faults] its output: ${b.output().trim().split('\n').slice(-2).join(' | ')}`);
    expect(await keyStates(env.DATABASE_URL!)).toEqual(['key-1:ok', 'key-2:ok']);
    expect(outcome).toBe('exit 2');
    expect(b.output()).toMatch(/ENCRYPTION_KEYS/);
    expect(b.output()).toMatch(/"dev1"/);
    expect(b.output()).not.toContain(materialB);
    expect((await chat(a.url, adminKey, 'a-after')).status).toBe(200);
  });

  it('rolling rotation: a replica without the new key id leaves rows sealed under it alone (not broken); the rotated replica serves them', async () => {
    const adminKey = newApiKey();
    const k1 = `k1:${Buffer.alloc(32, 1).toString('base64')}`;
    const k2 = `k2:${Buffer.alloc(32, 2).toString('base64')}`;
    const { env, cleanup } = await isolatedEnv('distributed', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      ENCRYPTION_KEYS: k1,
    });
    cleanups.push(cleanup);
    const old: TestGateway = await startInstance(env);
    cleanups.push(() => old.close());
    await addProvider(old, adminKey, fake, [{ key: 'sk-rot-one' }]);
    // The new replica: k2 current, k1 still readable. Its start-up heal reseals every row under k2.
    const rotated = await startInstance({ ...env, ENCRYPTION_KEYS: `${k2},${k1}` });
    cleanups.push(() => rotated.close());
    // An old replica (re)starting with k1 only: its heal meets rows under k2 it cannot read.
    const lagging = await startInstance(env);
    cleanups.push(async () => {
      dropClientConnections(lagging, rotated, old);
      await lagging.close();
    });
    await chat(lagging.url, adminKey, 'lagging'); // whatever it answers, it must not break the key
    expect(await keyStates(env.DATABASE_URL!)).toEqual(['key-1:ok']);
    expect((await chat(rotated.url, adminKey, 'rotated')).status).toBe(200);
  });
});
