import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import type net from 'node:net';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/app/create-app.js';
import { StartupNotes } from '../../src/common/startup-notes.js';
import { loadConfig } from '../../src/config/app-config.js';
import { bearer, createUserWithKey, signHs256 } from '../support/auth.js';
import { getJson, isolatedEnv } from '../support/gateway.js';

const JWT_SECRET = 'distributed-secret'.padEnd(40, '!');

interface Instance {
  app: NestFastifyApplication;
  url: string;
}

async function boot(env: Record<string, string>): Promise<Instance> {
  const app = await createApp(loadConfig(env));
  await app.listen({ port: 0, host: '127.0.0.1' });
  return { app, url: `http://127.0.0.1:${(app.getHttpServer().address() as net.AddressInfo).port}` };
}

/** Polls until `check` is true; returns the elapsed milliseconds (or fails after `limitMs`). */
async function msUntil(check: () => Promise<boolean>, limitMs: number): Promise<number> {
  const started = performance.now();
  while (performance.now() - started < limitMs) {
    if (await check()) return performance.now() - started;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`not within ${limitMs} ms`);
}

describe('two instances sharing Postgres and Redis (distributed)', () => {
  let a: Instance;
  let b: Instance;
  let cleanup: () => Promise<void>;
  let adminKey: string;

  beforeAll(async () => {
    const isolated = await isolatedEnv('distributed', { JWT_SECRET });
    cleanup = isolated.cleanup;
    // Started together, without ADMIN_BOOTSTRAP_KEY: both race to create the bootstrap admin.
    [a, b] = await Promise.all([boot(isolated.env), boot(isolated.env)]);
    const notes = [a, b]
      .flatMap((i) => i.app.get(StartupNotes).drain())
      .filter((n) => n.title.includes('admin'));
    expect(notes).toHaveLength(1);
    adminKey = notes[0]!.lines.join(' ').match(/fg_[A-Za-z0-9_-]{43}/)![0];
  });
  afterAll(async () => {
    await Promise.all([a?.app.close(), b?.app.close()]);
    await cleanup?.();
  });

  it('instances starting together create exactly one bootstrap admin', async () => {
    const rows = (await a.app.get(DataSource).query(`SELECT email FROM users WHERE role = 'admin'`)) as {
      email: string;
    }[];
    expect(rows).toEqual([{ email: 'admin@floodgate.local' }]);
    expect((await getJson(`${b.url}/api/me`, { headers: bearer(adminKey, false) })).body.role).toBe('admin');
  });

  it('a key revoked on instance A is rejected by instance B within 1 s (B had it cached)', async () => {
    const u = await createUserWithKey({ url: a.url }, adminKey, 'user');
    for (let i = 0; i < 3; i++)
      expect((await getJson(`${b.url}/api/me`, { headers: u.headers })).status).toBe(200);
    const revoked = await getJson(`${a.url}/api/keys/${u.keyId}`, { method: 'DELETE', headers: u.headers });
    expect(revoked.status).toBe(204);
    const ms = await msUntil(
      async () => (await getJson(`${b.url}/api/me`, { headers: u.headers })).status === 401,
      1000,
    );
    console.log(`revocation reached instance B after ${ms.toFixed(0)} ms`);
    expect(ms).toBeLessThan(1000);
    const r = await getJson(`${b.url}/api/me`, { headers: u.headers });
    expect(r.body.error.message).toBe('API key has been revoked');
  });

  it('an admin revoke on B and a user disable on A reach the other instance within 1 s (keys and JWTs)', async () => {
    const u = await createUserWithKey({ url: b.url }, adminKey, 'user');
    const second = await createUserWithKey({ url: b.url }, adminKey, 'user');
    expect((await getJson(`${a.url}/api/me`, { headers: second.headers })).status).toBe(200);
    expect(
      (
        await getJson(`${b.url}/api/admin/api-keys/${second.keyId}`, {
          method: 'DELETE',
          headers: bearer(adminKey, false),
        })
      ).status,
    ).toBe(204);
    expect(
      await msUntil(
        async () => (await getJson(`${a.url}/api/me`, { headers: second.headers })).status === 401,
        1000,
      ),
    ).toBeLessThan(1000);

    const token = signHs256(JWT_SECRET, { sub: 'idp|erin' });
    const jwtUser = await getJson(`${b.url}/api/me`, { headers: bearer(token, false) });
    expect(jwtUser.status).toBe(200);
    expect((await getJson(`${a.url}/api/me`, { headers: bearer(token, false) })).status).toBe(200);
    expect((await getJson(`${b.url}/api/me`, { headers: u.headers })).status).toBe(200);
    for (const id of [u.user.id, jwtUser.body.id]) {
      const off = await getJson(`${a.url}/api/admin/users/${id}`, {
        method: 'PATCH',
        headers: bearer(adminKey),
        body: JSON.stringify({ disabled: true }),
      });
      expect(off.status).toBe(200);
    }
    const msKey = await msUntil(
      async () => (await getJson(`${b.url}/api/me`, { headers: u.headers })).status === 401,
      1000,
    );
    const msJwt = await msUntil(
      async () => (await getJson(`${b.url}/api/me`, { headers: bearer(token, false) })).status === 401,
      1000,
    );
    expect(msKey).toBeLessThan(1000);
    expect(msJwt).toBeLessThan(1000);
  });
});
