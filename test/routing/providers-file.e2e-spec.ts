import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { afterAll, describe, expect, it } from 'vitest';
import { RoutesService } from '../../src/routing/services/routes.service.js';
import { isolatedEnv, MODES, type TestGateway } from '../support/gateway.js';
import { adminClient, newAdminKey, startOn } from '../key-pool/helpers.js';

describe.each(MODES)('PROVIDERS_FILE routes (%s mode)', (mode) => {
  const cleanups: (() => Promise<unknown>)[] = [];
  afterAll(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  async function fileWith(text: string): Promise<string> {
    const dir = await mkdtemp(join(tmpdir(), 'fg-routes-'));
    cleanups.push(() => rm(dir, { recursive: true, force: true }));
    const file = join(dir, 'providers.yaml');
    await writeFile(file, text);
    return file;
  }

  it('routes naming providers of the file exist after start, resolve, and survive an unchanged restart untouched', async () => {
    const yaml = (weight: number, withSecond: boolean) => `
providers:
  - name: alpha
    base_url: http://127.0.0.1:9/v1
  - name: Beta
    base_url: http://127.0.0.1:9/v1
routes:
  - model: chat-default
    max_attempts: 2
    targets:
      - provider: alpha
        model: gpt-4o-mini
        weight: ${weight}
      - provider: beta
        model: llama
        tier: 2
        timeouts: { first_byte_ms: 5000 }
        breaker: closed
${withSecond ? `  - model: embed\n    targets:\n      - provider: alpha\n        model: text-embedding-3-small\n` : ''}`;
    const file = await fileWith(yaml(3, true));
    const adminKey = newAdminKey();
    const { env, cleanup } = await isolatedEnv(mode, { ADMIN_BOOTSTRAP_KEY: adminKey, PROVIDERS_FILE: file });
    if (mode === 'embedded') {
      // the in-memory database goes with the process: one start is all this mode can show
      const gw = await startOn(env);
      cleanups.push(() => gw.close());
      const route = await gw.app.get(RoutesService).resolve('chat-default');
      expect(route).toMatchObject({
        maxAttempts: 2,
        targets: [{ model: 'gpt-4o-mini', weight: 3 }, { tier: 2 }],
      });
      expect((await gw.app.get(RoutesService).resolve('embed'))?.targets).toHaveLength(1);
      return;
    }
    cleanups.push(cleanup);
    let gw: TestGateway = await startOn(env);
    let admin = adminClient(gw.url, adminKey);
    const providers = (await admin.get('/api/admin/providers')).body as any[];
    const alpha = providers.find((p) => p.name === 'alpha')!.id;
    const beta = providers.find((p) => p.name === 'Beta')!.id;
    const listed = (await admin.get('/api/admin/routes')).body as any[];
    expect(listed.map((r) => [r.model, r.source])).toEqual([
      ['chat-default', 'file'],
      ['embed', 'file'],
    ]);
    expect(listed[0]).toMatchObject({
      max_attempts: 2,
      enabled: true,
      targets: [
        { provider_id: alpha, provider: 'alpha', model: 'gpt-4o-mini', weight: 3, tier: 1, breaker: 'auto' },
        {
          provider_id: beta,
          provider: 'Beta',
          model: 'llama',
          weight: 1,
          tier: 2,
          timeouts: { connect_ms: null, first_byte_ms: 5000, total_ms: null, stream_total_ms: null },
          breaker: 'closed',
        },
      ],
    });
    expect((await gw.app.get(RoutesService).resolve('chat-default'))?.id).toBe(listed[0].id);
    // an API-made route is the file's business only if the file names it
    const manual = await admin.post('/api/admin/routes', {
      model: 'manual',
      targets: [{ provider_id: alpha, model: 'm' }],
    });
    expect(manual.status).toBe(201);
    const auditCount = async () =>
      Number(
        (
          await gw.app
            .get(DataSource)
            .query(`SELECT count(*) AS n FROM audit_log WHERE target_type = 'route'`)
        )[0].n,
      );
    const before = await auditCount();
    await gw.close();

    // unchanged file: same rows, no writes
    gw = await startOn(env);
    admin = adminClient(gw.url, adminKey);
    const again = (await admin.get('/api/admin/routes')).body as any[];
    expect(again.filter((r) => r.source === 'file').map((r) => [r.id, r.updated_at])).toEqual(
      listed.map((r) => [r.id, r.updated_at]),
    );
    expect(await auditCount()).toBe(before);
    await gw.close();

    // edited file: a weight changes, a route goes; the API-made route stays
    await writeFile(file, yaml(7, false));
    gw = await startOn(env);
    cleanups.push(() => gw.close());
    admin = adminClient(gw.url, adminKey);
    const after = (await admin.get('/api/admin/routes')).body as any[];
    expect(after.map((r) => r.model)).toEqual(['chat-default', 'manual']);
    expect(after[0].targets[0].weight).toBe(7);
    expect(await gw.app.get(RoutesService).resolve('embed')).toBeNull();
    const actions = (
      (await gw.app
        .get(DataSource)
        .query(
          `SELECT action FROM audit_log WHERE target_type = 'route' AND changes->>'source' = 'file'`,
        )) as any[]
    ).map((a) => a.action);
    expect(actions.sort()).toEqual(['route.create', 'route.create', 'route.delete', 'route.update']);
  });

  it('a route naming an unknown provider (or breaking a rule) stops the start, every problem named by path', async () => {
    const file = await fileWith(`
providers:
  - name: alpha
    base_url: http://127.0.0.1:9/v1
routes:
  - model: ok
    targets:
      - provider: alpha
        model: m
      - provider: nowhere
        model: m
  - model: "bad*"
    targets:
      - provider: alpha
        model: m
`);
    const { env, cleanup } = await isolatedEnv(mode, { PROVIDERS_FILE: file });
    cleanups.push(cleanup);
    const err = await startOn(env).then(
      async (gw) => {
        await gw.close();
        return null;
      },
      (e: Error) => e,
    );
    expect(err).toBeInstanceOf(Error);
    expect(err!.message).toContain(`PROVIDERS_FILE ${file} is invalid`);
    expect(err!.message).toContain('routes[0].targets[1].provider: unknown provider "nowhere"');
    expect(err!.message).toContain('routes[1].model');
  });

  it('field problems are listed all at once with their paths', async () => {
    const file = await fileWith(
      JSON.stringify({
        providers: [{ name: 'alpha', base_url: 'http://127.0.0.1:9/v1' }],
        routes: [
          { model: 'a', targets: [{ provider: 'alpha', model: 'm', weight: 0 }] },
          { model: 'b', targets: [{ provider_id: 'x', model: 'm' }], max_attempts: 11 },
          { model: 'a', targets: [{ provider: 'alpha', model: 'm' }] },
        ],
      }),
    );
    const { env, cleanup } = await isolatedEnv(mode, { PROVIDERS_FILE: file });
    cleanups.push(cleanup);
    const err = await startOn(env).then(
      async (gw) => {
        await gw.close();
        return null;
      },
      (e: Error) => e,
    );
    expect(err?.message).toContain('routes[0].targets[0].weight');
    expect(err?.message).toContain('routes[1].targets[0].provider_id');
    expect(err?.message).toContain('routes[1].targets[0].provider');
    expect(err?.message).toContain('routes[1].max_attempts');
    expect(err?.message).toContain('routes[2].model: a appears twice');
  });
});
