import { randomBytes, randomUUID } from 'node:crypto';
import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { KeyCipher, providerKeyAad } from '../../src/key-pool/domain/key-cipher.js';
import { newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { getJson, startGateway, type TestGateway } from '../support/gateway.js';
import { cliFor, runCli, tableRows, type CliResult } from './cli-runner.js';

/**
 * Every CLI command as a real process (`node bin/floodgate.js …`) against a running gateway in
 * front of a fake OpenAI-compatible provider: what it prints (tables and --json), what it changed
 * (checked through the admin API, the relay and the database), and its failures (exit 1 with the
 * API's message and the request id).
 */

const UUID_RE = /[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;
const NEW = { id: 'new', key: randomBytes(32) };
const OLD = { id: 'old', key: randomBytes(32) };
const LOST = { id: 'lost', key: randomBytes(32) };
const spec = (k: { id: string; key: Buffer }) => `${k.id}:${k.key.toString('base64')}`;

const SECRET_A = 'sk-cli-upstream-aaaa-0001';
const SECRET_B = 'sk-cli-upstream-bbbb-0002';
const SECRET_C = 'sk-cli-upstream-cccc-0003';

function ok(r: CliResult): CliResult {
  expect(r.code, `exit ${r.code}\nstdout:\n${r.stdout}\nstderr:\n${r.stderr}`).toBe(0);
  return r;
}

describe('floodgate CLI against a running gateway', () => {
  let gw: TestGateway;
  let fake: FakeProvider;
  const adminKey = newApiKey();
  let cli: ReturnType<typeof cliFor>;
  const api = (method: string, path: string, body?: unknown, key = adminKey) =>
    getJson(`${gw.url}${path}`, {
      method,
      headers: {
        authorization: `Bearer ${key}`,
        ...(body === undefined ? {} : { 'content-type': 'application/json' }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  const chat = (key: string) =>
    api(
      'POST',
      '/v1/chat/completions',
      { model: 'gpt-4o-mini', messages: [{ role: 'user', content: 'hi' }] },
      key,
    );

  beforeAll(async () => {
    fake = await FakeProvider.start();
    gw = await startGateway('embedded', {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      ENCRYPTION_KEYS: `${spec(NEW)},${spec(OLD)}`,
      // the admin key is rate-limited like any key (60/min by default): this file makes ~150 calls
      RATE_LIMIT_KEY_RPM: '100000',
    });
    cli = cliFor(gw.url, adminKey);
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  let ada: { id: string; email: string };

  it('users create (table, -q, --json) and users list (table, filters, --json); a taken email → exit 1 with the API message', async () => {
    const created = ok(
      await cli([
        'users',
        'create',
        '--email',
        'ada@cli.test',
        '--role',
        'developer',
        '--name',
        'Ada Lovelace',
      ]),
    );
    const id = UUID_RE.exec(created.stdout)?.[0];
    expect(created.stdout).toMatch(new RegExp(`^Created user ${id}\n`));
    expect(created.stdout).toMatch(/^ {2}role +developer$/m);
    ada = { id: id!, email: 'ada@cli.test' };
    expect((await api('GET', `/api/admin/users/${id}`)).body).toMatchObject({
      email: 'ada@cli.test',
      name: 'Ada Lovelace',
      role: 'developer',
    });

    const quiet = ok(await cli(['users', 'create', '--email', 'bob@cli.test', '--role', 'user', '-q']));
    expect(quiet.stdout).toMatch(new RegExp(`^${UUID_RE.source}\n$`));
    expect((await api('GET', `/api/admin/users/${quiet.stdout.trim()}`)).body.email).toBe('bob@cli.test');

    const json = ok(
      await cli(['users', 'create', '--email', 'eve@cli.test', '--role', 'viewer', '--disabled', '--json']),
    ).json();
    expect(json).toMatchObject({
      email: 'eve@cli.test',
      role: 'viewer',
      disabled: true,
      id: expect.any(String),
    });

    const table = tableRows(ok(await cli(['users', 'list'])).stdout);
    expect(table[0]).toEqual(['ID', 'EMAIL', 'NAME', 'ROLE', 'STATUS', 'JWT SUBJECT', 'LAST SEEN']);
    expect(table).toContainEqual([ada.id, 'ada@cli.test', 'Ada Lovelace', 'developer', 'enabled', '-', '-']);
    expect(table.find((r) => r[1] === 'eve@cli.test')?.[4]).toBe('disabled');
    expect(table.length).toBe(1 + 4); // header + bootstrap admin + 3

    const users = ok(await cli(['users', 'list', '--role', 'user', '--json'])).json();
    expect(users.map((u: { email: string }) => u.email)).toEqual(['bob@cli.test']);
    const byEmail = ok(await cli(['users', 'list', '--email', 'ADA@cli.test', '--json'])).json();
    expect(byEmail).toHaveLength(1);

    const taken = await cli(['users', 'create', '--email', 'ada@cli.test', '--role', 'user']);
    const direct = await api('POST', '/api/admin/users', { email: 'ada@cli.test', role: 'user' });
    expect(direct.status).toBe(409);
    expect(taken.code).toBe(1);
    expect(taken.stdout).toBe('');
    const [first, second] = taken.stderr.split('\n');
    expect(first).toBe(`floodgate: ${direct.body.error.message}`);
    expect(second).toMatch(
      new RegExp(
        `^ {2}HTTP 409, invalid_request_error \\(${direct.body.error.code}\\).*, request id cli-${UUID_RE.source}$`,
      ),
    );
  });

  let adaKey: { id: string; key: string };

  it('keys create: for a user (by email) with every limit option, for yourself (-q), table output shows the key once', async () => {
    const created = ok(
      await cli([
        'keys',
        'create',
        '--name',
        'ada-ci',
        '--user',
        'ada@cli.test',
        '--role',
        'developer',
        '--rpm',
        '60',
        '--tpm',
        '100000',
        '--allowed-models',
        'gpt-4o-mini',
        '--allowed-models',
        'meta/*,org/x',
        '--max-priority',
        'normal',
        '--expires-at',
        '2099-01-01T00:00:00Z',
        '--json',
      ]),
    ).json();
    expect(created).toMatchObject({
      name: 'ada-ci',
      owner_id: ada.id,
      role: 'developer',
      limits: { rpm: 60, tpm: 100000 },
      allowed_models: ['gpt-4o-mini', 'meta/*', 'org/x'],
      max_priority: 'normal',
      expires_at: '2099-01-01T00:00:00.000Z',
      key: expect.stringMatching(/^fg_[A-Za-z0-9_-]{43}$/),
    });
    adaKey = { id: created.id, key: created.key };
    expect((await api('GET', '/api/me', undefined, created.key)).body).toMatchObject({
      email: 'ada@cli.test',
    });

    // by user id, table output: the raw key once, with the advice to store it
    const table = ok(
      await cli(['keys', 'create', '--name', 'ada-batch', '--user', ada.id, '--role', 'user']),
    );
    const raw = /^key: (fg_[A-Za-z0-9_-]{43})$/m.exec(table.stdout)?.[1];
    expect(raw).toBeDefined();
    expect(table.stdout).toContain('Store it now: it is not shown again.');
    expect(table.stdout).toMatch(/^ {2}limits +rpm default, tpm unlimited$/m);
    expect((await api('GET', '/api/me', undefined, raw)).body.email).toBe('ada@cli.test');

    // for yourself: -q prints only the key, for scripts
    const mine = ok(await cli(['keys', 'create', '--name', 'my-app', '--role', 'user', '-q']));
    expect(mine.stdout).toMatch(/^fg_[A-Za-z0-9_-]{43}\n$/);
    expect((await api('GET', '/api/me', undefined, mine.stdout.trim())).body).toMatchObject({
      email: 'admin@floodgate.local',
    });

    // an unknown user → exit 1, the API's 404
    const nobody = await cli(['keys', 'create', '--name', 'x', '--user', 'nobody@cli.test']);
    expect(nobody.code).toBe(1);
    expect(nobody.stderr).toBe('floodgate: no user with email nobody@cli.test\n');
  });

  it('keys list (table, --user, --mine, --include-revoked) and keys revoke (the key stops working; unknown id → exit 1)', async () => {
    const table = tableRows(ok(await cli(['keys', 'list'])).stdout);
    expect(table[0]).toEqual([
      'ID',
      'NAME',
      'KEY',
      'OWNER',
      'ROLE',
      'RPM',
      'TPM',
      'MODELS',
      'MAX PRIORITY',
      'STATUS',
      'LAST USED',
    ]);
    const row = table.find((r) => r[0] === adaKey.id)!;
    expect(row.slice(1, 10)).toEqual([
      'ada-ci',
      `${adaKey.key.slice(0, 8)}…${adaKey.key.slice(-4)}`,
      ada.id,
      'developer',
      '60',
      '100000',
      'gpt-4o-mini,meta/*,org/x',
      'normal',
      'expires 2099-01-01 00:00:00Z',
    ]);
    expect(table.map((r) => r[1])).toEqual(expect.arrayContaining(['ada-batch', 'my-app', 'bootstrap']));

    const adas = ok(await cli(['keys', 'list', '--user', 'ada@cli.test', '--json'])).json();
    expect(adas.map((k: { name: string }) => k.name).sort()).toEqual(['ada-batch', 'ada-ci']);
    expect(adas.every((k: { owner_id: string }) => k.owner_id === ada.id)).toBe(true);
    expect(JSON.stringify(adas)).not.toContain(adaKey.key);
    const mine = ok(await cli(['keys', 'list', '--mine', '--json'])).json();
    expect(mine.map((k: { name: string }) => k.name).sort()).toEqual(['bootstrap', 'my-app']);

    const revoked = ok(await cli(['keys', 'revoke', adaKey.id]));
    expect(revoked.stdout).toBe(`revoked ${adaKey.id}\n`);
    await expect
      .poll(async () => (await api('GET', '/api/me', undefined, adaKey.key)).status, { timeout: 3000 })
      .toBe(401);
    expect(ok(await cli(['keys', 'revoke', adaKey.id, '--json'])).json()).toEqual({ revoked: [adaKey.id] });

    const active = ok(await cli(['keys', 'list', '--user', ada.id, '--json'])).json();
    expect(active.map((k: { id: string }) => k.id)).not.toContain(adaKey.id);
    const all = tableRows(ok(await cli(['keys', 'list', '--user', ada.id, '--include-revoked'])).stdout);
    expect(all.find((r) => r[0] === adaKey.id)?.[9]).toBe('revoked');

    const unknown = randomUUID();
    const missing = await cli(['keys', 'revoke', unknown]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(
      /^floodgate: API key not found\n {2}HTTP 404, invalid_request_error \(api_key_not_found\), field id, request id cli-/,
    );
  });

  it('keys update: only the given fields change (table, --json); none clears; usage errors exit 2; a revoked key → exit 1 with the 409', async () => {
    const key = ok(
      await cli([
        'keys',
        'create',
        '--name',
        'ada-upd',
        '--user',
        ada.id,
        '--role',
        'user',
        '--rpm',
        '50',
        '--json',
      ]),
    ).json();
    const table = ok(
      await cli([
        'keys',
        'update',
        key.id,
        '--name',
        'ada-updated',
        '--tpm',
        '5000',
        '--budget-usd',
        '2.5',
        '--budget-period',
        'week',
        '--allowed-models',
        'gpt-4o-mini,meta/*',
      ]),
    );
    expect(table.stdout).toMatch(new RegExp(`^Updated API key ${key.id} \\(ada-updated\\)\n`));
    expect(table.stdout).toMatch(/^ {2}limits +rpm 50, tpm 5000$/m);
    expect(table.stdout).toMatch(/^ {2}budget +2\.5 USD per week$/m);
    expect(table.stdout).toMatch(/^ {2}models +gpt-4o-mini, meta\/\*$/m);
    const listed = async () =>
      (await api('GET', `/api/admin/api-keys?user_id=${ada.id}`)).body.data.find(
        (k: { id: string }) => k.id === key.id,
      );
    expect(await listed()).toMatchObject({
      name: 'ada-updated',
      limits: { rpm: 50, tpm: 5000 },
      budget: { limit_usd: 2.5, period: 'week' },
      allowed_models: ['gpt-4o-mini', 'meta/*'],
    });

    const cleared = ok(
      await cli(['keys', 'update', key.id, '--rpm', 'none', '--no-budget', '--all-models', '--json']),
    ).json();
    expect(cleared).toMatchObject({
      id: key.id,
      name: 'ada-updated',
      limits: { rpm: null, tpm: 5000 },
      budget: null,
      allowed_models: null,
    });
    expect(await listed()).toMatchObject({
      limits: { rpm: null, tpm: 5000 },
      budget: null,
      allowed_models: null,
    });

    for (const [args, message] of [
      [[key.id], /nothing to change/],
      [['not-a-uuid', '--rpm', '5'], /"not-a-uuid" is not a key id/],
      [[key.id, '--budget-usd', '5'], /--budget-usd and --budget-period go together/],
      [
        [key.id, '--budget-usd', '5', '--budget-period', 'year'],
        /--budget-period must be one of day, week, month, total/,
      ],
      [
        [key.id, '--budget-usd', '0.0000001', '--budget-period', 'day'],
        /--budget-usd must be a positive amount/,
      ],
      [[key.id, '--no-budget', '--budget-period', 'day'], /not both/],
      [[key.id, '--rpm', '0'], /--rpm must be an integer 1-1000000 or "none"/],
      [[key.id, '--allowed-models', 'x', '--all-models'], /not both/],
    ] as const) {
      const r = await cli(['keys', 'update', ...args]);
      expect(r.code, `${args.join(' ')}: ${r.stderr}`).toBe(2);
      expect(r.stderr).toMatch(message);
    }

    const revoked = await cli(['keys', 'update', adaKey.id, '--name', 'x']);
    expect(revoked.code).toBe(1);
    expect(revoked.stderr).toMatch(/^floodgate: .*\n {2}HTTP 409, invalid_request_error \(api_key_revoked\)/);
    const missing = await cli(['keys', 'update', randomUUID(), '--name', 'x']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toMatch(/HTTP 404, invalid_request_error \(api_key_not_found\)/);
  });

  let providerId: string;

  it('providers add (options, -q, refusals → exit 1), list, disable and enable by name or id', async () => {
    const added = ok(
      await cli([
        'providers',
        'add',
        '--name',
        'fake',
        '--kind',
        'openai',
        '--base-url',
        fake.baseUrl,
        '--models',
        'gpt-4o-mini,gpt-4o',
        '--header',
        'OpenAI-Organization: org-cli',
        '--rpm',
        '600',
        '--burst',
        '50',
        '--timeout-ms',
        '5000',
        '-q',
      ]),
    );
    providerId = added.stdout.trim();
    expect(providerId).toMatch(new RegExp(`^${UUID_RE.source}$`));
    expect((await api('GET', `/api/admin/providers/${providerId}`)).body).toMatchObject({
      name: 'fake',
      kind: 'openai',
      base_url: fake.baseUrl,
      models: ['gpt-4o-mini', 'gpt-4o'],
      headers: { 'OpenAI-Organization': 'org-cli' },
      rpm: 600,
      burst: 50,
      timeout_ms: 5000,
      enabled: true,
    });

    const table = ok(
      await cli(['providers', 'add', '--name', 'spare', '--base-url', `${fake.url}/v2`, '--disabled']),
    );
    expect(table.stdout).toMatch(/^Created provider [0-9a-f-]{36} \(spare\)\n/);
    expect(table.stdout).toMatch(/^ {2}status +disabled$/m);
    expect(table.stdout).toMatch(/^ {2}kind +openai$/m);
    const badKind = await cli([
      'providers',
      'add',
      '--name',
      'x',
      '--kind',
      'gemini',
      '--base-url',
      fake.baseUrl,
    ]);
    expect(badKind.code).not.toBe(0);
    expect(badKind.stderr).toMatch(/--kind must be one of openai, anthropic, got "gemini"/);

    const taken = await cli(['providers', 'add', '--name', 'FAKE', '--base-url', fake.baseUrl]);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(
      /^floodgate: a provider named FAKE already exists\n {2}HTTP 409, invalid_request_error \(provider_name_taken\), field name, request id cli-/,
    );
    const metadata = await cli([
      'providers',
      'add',
      '--name',
      'evil',
      '--base-url',
      'http://169.254.169.254/v1',
    ]);
    expect(metadata.code).toBe(1);
    expect(metadata.stderr).toMatch(
      /\n {2}HTTP 400, invalid_request_error \(base_url_forbidden\), field base_url/,
    );

    const list = tableRows(ok(await cli(['providers', 'list'])).stdout);
    expect(list[0]).toEqual(['ID', 'NAME', 'BASE URL', 'MODELS', 'STATUS', 'RPM', 'KEYS', 'SOURCE']);
    expect(list).toContainEqual([
      providerId,
      'fake',
      fake.baseUrl,
      'gpt-4o-mini,gpt-4o',
      'enabled',
      '600',
      '0/0 active',
      'api',
    ]);
    expect(list.find((r) => r[1] === 'spare')?.[4]).toBe('disabled');

    const disabled = ok(await cli(['providers', 'disable', 'Fake']));
    expect(disabled.stdout).toBe(`disabled provider fake (${providerId})\n`);
    expect((await api('GET', `/api/admin/providers/${providerId}`)).body.enabled).toBe(false);
    const enabled = ok(await cli(['providers', 'enable', providerId, '--json'])).json();
    expect(enabled).toMatchObject({ id: providerId, enabled: true });
    expect((await api('GET', `/api/admin/providers/${providerId}`)).body.enabled).toBe(true);

    const nope = await cli(['providers', 'disable', 'nope']);
    expect(nope.code).toBe(1);
    expect(nope.stderr).toBe('floodgate: no provider named "nope" (providers: fake, spare)\n');
    const gone = await cli(['providers', 'enable', randomUUID()]);
    expect(gone.code).toBe(1);
    expect(gone.stderr).toMatch(/\n {2}HTTP 404, invalid_request_error \(provider_not_found\)/);
  });

  it('routes create (targets by provider name, -q, table, refusals → exit 1), list, delete by model or id', async () => {
    const id = ok(
      await cli([
        'routes',
        'create',
        '--model',
        'cli-chat',
        '--target',
        'fake/gpt-4o-mini,weight=3',
        '--target',
        'SPARE/org/llama:8b,tier=2',
        '--max-attempts',
        '2',
        '-q',
      ]),
    ).stdout.trim();
    expect(id).toMatch(new RegExp(`^${UUID_RE.source}$`));
    const spareId = (await api('GET', '/api/admin/providers')).body.find((p: any) => p.name === 'spare').id;
    expect((await api('GET', `/api/admin/routes/${id}`)).body).toMatchObject({
      model: 'cli-chat',
      max_attempts: 2,
      targets: [
        { provider_id: providerId, model: 'gpt-4o-mini', weight: 3, tier: 1 },
        { provider_id: spareId, model: 'org/llama:8b', weight: 1, tier: 2 },
      ],
    });
    const table = ok(
      await cli(['routes', 'create', '--model', 'cli-other', '--target', 'fake/gpt-4o', '--disabled']),
    );
    expect(table.stdout).toMatch(/^Created route [0-9a-f-]{36} \(cli-other\)\n/);
    expect(table.stdout).toMatch(/^ {2}status +disabled$/m);

    const taken = await cli(['routes', 'create', '--model', 'cli-chat', '--target', 'fake/x']);
    expect(taken.code).toBe(1);
    expect(taken.stderr).toMatch(/\n {2}HTTP 409, invalid_request_error \(route_exists\), field model/);
    const noProvider = await cli(['routes', 'create', '--model', 'y', '--target', 'nope/x']);
    expect(noProvider.code).toBe(1);
    expect(noProvider.stderr).toBe('floodgate: no provider named "nope" (providers: fake, spare)\n');
    const pattern = await cli(['routes', 'create', '--model', 'y*', '--target', 'fake/x']);
    expect(pattern.code).toBe(1);
    expect(pattern.stderr).toMatch(
      /\n {2}HTTP 400, invalid_request_error \(validation_failed\), field model/,
    );

    const list = tableRows(ok(await cli(['routes', 'list'])).stdout);
    expect(list[0]).toEqual(['ID', 'MODEL', 'TARGETS', 'ATTEMPTS', 'STATUS', 'SOURCE']);
    expect(list).toContainEqual([
      id,
      'cli-chat',
      'fake/gpt-4o-mini×3, spare/org/llama:8b (tier 2)',
      '2',
      'enabled',
      'api',
    ]);
    expect(list.find((r) => r[1] === 'cli-other')?.[4]).toBe('disabled');
    expect(ok(await cli(['routes', 'list', '--json'])).json()).toHaveLength(2);

    expect(ok(await cli(['routes', 'delete', 'cli-chat'])).stdout).toBe(`deleted route cli-chat (${id})\n`);
    expect((await api('GET', `/api/admin/routes/${id}`)).status).toBe(404);
    const other = (await api('GET', '/api/admin/routes')).body[0].id as string;
    ok(await cli(['routes', 'delete', other]));
    expect((await api('GET', '/api/admin/routes')).body).toEqual([]);
    const missing = await cli(['routes', 'delete', 'cli-chat']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toBe('floodgate: no route for model "cli-chat"\n');
  });

  let keyA: string;

  it('upstream-keys add from --key-env, stdin and --key (warned); list never shows a value; disable/enable steer the relay', async () => {
    const a = ok(
      await cli(
        ['upstream-keys', 'add', '--provider', 'fake', '--label', 'a', '--key-env', 'FG_UPSTREAM', '-q'],
        {
          env: { FG_UPSTREAM: SECRET_A },
        },
      ),
    );
    expect(a.stderr).toBe('');
    keyA = a.stdout.trim();
    expect(keyA).toMatch(new RegExp(`^${UUID_RE.source}$`));

    // stdin as a file or pipe delivers it: the trailing newline is not part of the key
    const b = ok(
      await cli(
        [
          'upstream-keys',
          'add',
          '--provider',
          providerId,
          '--label',
          'b',
          '--priority',
          '2',
          '--max-concurrent',
          '4',
          '--max-rpm',
          '100',
          '--json',
        ],
        { input: `${SECRET_B}\n` },
      ),
    ).json();
    expect(b).toMatchObject({
      label: 'b',
      masked: 'sk-…0002',
      priority: 2,
      max_concurrent: 4,
      max_rpm: 100,
      state: 'active',
    });
    expect(JSON.stringify(b)).not.toContain(SECRET_B);

    const c = ok(
      await cli([
        'upstream-keys',
        'add',
        '--provider',
        'fake',
        '--label',
        'c',
        '--key',
        SECRET_C,
        '--priority',
        '3',
        '--max-tpm',
        '5000',
        '--disabled',
      ]),
    );
    expect(c.stderr).toContain('floodgate: warning: --key puts the secret in your shell history');
    expect(c.stdout).toMatch(/^Added upstream key [0-9a-f-]{36} \(c\) to provider fake\n/);
    expect(c.stdout).toMatch(/^ {2}state +disabled$/m);
    expect(c.stdout).not.toContain(SECRET_C);

    const dup = await cli(
      ['upstream-keys', 'add', '--provider', 'fake', '--label', 'A', '--key-env', 'FG_UPSTREAM'],
      {
        env: { FG_UPSTREAM: 'sk-another-value-0009' },
      },
    );
    expect(dup.code).toBe(1);
    expect(dup.stderr).toMatch(/\(provider_key_label_taken\), field label/);

    const table = ok(await cli(['upstream-keys', 'list', '--provider', 'fake']));
    for (const secret of [SECRET_A, SECRET_B, SECRET_C]) expect(table.stdout).not.toContain(secret);
    const rows = tableRows(table.stdout);
    expect(rows[0]).toEqual([
      'ID',
      'PROVIDER',
      'LABEL',
      'KEY',
      'STATE',
      'PRIORITY',
      'MAX RPM',
      'MAX TPM',
      'CONCURRENCY',
      'IN FLIGHT',
      'REQUESTS',
      'ENC KEY',
      'LAST USED',
    ]);
    expect(rows.slice(1).map((r) => r.slice(1, 12))).toEqual([
      ['fake', 'a', 'sk-…0001', 'active', '1', '-', '-', 'adaptive', '0', '0', 'new'],
      ['fake', 'b', 'sk-…0002', 'active', '2', '100', '-', '4', '0', '0', 'new'],
      ['fake', 'c', 'sk-…0003', 'disabled', '3', '-', '5000', 'adaptive', '0', '0', 'new'],
    ]);
    const every = ok(await cli(['upstream-keys', 'list', '--json'])).json();
    expect(
      every.map((k: { provider_name: string; label: string }) => `${k.provider_name}/${k.label}`),
    ).toEqual(['fake/a', 'fake/b', 'fake/c']);

    // the values reach the provider exactly as given: a (priority 1) first, b once a is disabled
    const client = ok(await cli(['keys', 'create', '--name', 'relay', '--role', 'user', '-q'])).stdout.trim();
    expect((await chat(client)).status).toBe(200);
    expect(fake.requests.at(-1)?.key).toBe(SECRET_A);
    const disabled = ok(await cli(['upstream-keys', 'disable', keyA]));
    expect(disabled.stdout).toBe(`disabled upstream key a (${keyA}): state disabled\n`);
    expect((await chat(client)).status).toBe(200);
    expect(fake.requests.at(-1)?.key).toBe(SECRET_B);
    const enabled = ok(await cli(['upstream-keys', 'enable', keyA, '--json'])).json();
    expect(enabled).toMatchObject({ id: keyA, state: 'active', enabled: true });
    expect((await chat(client)).status).toBe(200);
    expect(fake.requests.at(-1)?.key).toBe(SECRET_A);

    const unknown = await cli(['upstream-keys', 'disable', randomUUID()]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/\(provider_key_not_found\)/);
    const noProvider = await cli(['upstream-keys', 'list', '--provider', 'nope']);
    expect(noProvider.code).toBe(1);
    expect(noProvider.stderr).toContain('no provider named "nope"');
  });

  it('status: a readable summary of /api/admin/status, and --json', async () => {
    const text = ok(await cli(['status'])).stdout;
    expect(text).toMatch(/^Floodgate \d+\.\d+\.\d+\S*, embedded mode, up \d+[smhd]/);
    expect(text).toMatch(/^ {2}requests +\d+ HTTP, [3-9] relayed \(this instance\)/m);
    expect(text).toMatch(/^ {2}queue +0 \(urgent 0, high 0, normal 0, low 0\)$/m);
    const rows = tableRows(text);
    expect(rows).toContainEqual(['PROVIDER', 'STATUS', 'QUEUED', 'RETREAT', 'KEYS']);
    const fakeRow = rows.find((r) => r[0] === 'fake')!;
    expect(fakeRow.slice(0, 3)).toEqual(['fake', 'enabled', '0']);
    expect(fakeRow[4]).toBe('2 active, 1 disabled');
    expect(rows.filter((r) => r[0] === 'fake' && ['a', 'b', 'c'].includes(r[1]!)).map((r) => r[2])).toEqual([
      'active',
      'active',
      'disabled',
    ]);

    const json = ok(await cli(['status', '--json'])).json();
    expect(json).toMatchObject({ mode: 'embedded', requests: { relayed_total: expect.any(Number) } });
    expect(json.requests.relayed_total).toBeGreaterThanOrEqual(3);
    expect(json.providers.map((p: { name: string }) => p.name)).toEqual(
      expect.arrayContaining(['fake', 'spare']),
    );
  });

  it('encryption rotate: re-encrypts what an older key sealed, reports broken values (warned, exit 0), audited', async () => {
    const vault = ok(
      await cli([
        'providers',
        'add',
        '--name',
        'vault',
        '--base-url',
        fake.baseUrl,
        '--models',
        'vault-model',
        '-q',
      ]),
    ).stdout.trim();
    const secrets = ['sk-vault-one-000000001', 'sk-vault-two-000000002', 'sk-vault-three-00000003'];
    const ids: string[] = [];
    for (const [i, secret] of secrets.entries()) {
      ids.push(
        ok(
          await cli(['upstream-keys', 'add', '--provider', 'vault', '--label', `v${i}`, '-q'], {
            input: secret,
          }),
        ).stdout.trim(),
      );
    }
    // as if written by an instance still on the old key, and one under a key nobody has any more
    const ds = gw.app.get(DataSource);
    const reseal = async (id: string, secret: string, key: { id: string; key: Buffer }) => {
      const sealed = new KeyCipher([key]).encrypt(secret, providerKeyAad(id));
      await ds.query(`UPDATE provider_keys SET ciphertext = $2, key_id = $3 WHERE id = $1`, [
        id,
        sealed.ciphertext,
        key.id,
      ]);
    };
    await reseal(ids[0]!, secrets[0]!, OLD);
    await reseal(ids[1]!, secrets[1]!, OLD);
    await reseal(ids[2]!, secrets[2]!, LOST);

    const rotated = ok(await cli(['encryption', 'rotate']));
    expect(rotated.stdout).toBe(
      [
        'Current encryption key: new',
        '  needed work   3',
        '  re-encrypted  2',
        '  recovered     0',
        '  broken        1',
        '',
      ].join('\n'),
    );
    expect(rotated.stderr).toContain('floodgate: warning: 1 upstream key(s) cannot be decrypted');
    const rows = (await ds.query(`SELECT id, key_id, broken_at FROM provider_keys WHERE provider_id = $1`, [
      vault,
    ])) as { id: string; key_id: string; broken_at: Date | null }[];
    const byId = new Map(rows.map((r) => [r.id, r]));
    expect(byId.get(ids[0]!)).toMatchObject({ key_id: 'new', broken_at: null });
    expect(byId.get(ids[1]!)).toMatchObject({ key_id: 'new', broken_at: null });
    expect(byId.get(ids[2]!)).toMatchObject({ key_id: 'lost', broken_at: expect.any(Date) });
    // the healed values still decrypt to what was added
    for (const i of [0, 1]) {
      const row = (await ds.query(`SELECT ciphertext FROM provider_keys WHERE id = $1`, [ids[i]]))[0];
      expect(
        new KeyCipher([NEW]).decrypt({ keyId: 'new', ciphertext: row.ciphertext }, providerKeyAad(ids[i]!)),
      ).toBe(secrets[i]);
    }

    const again = ok(await cli(['encryption', 'rotate', '--json']));
    expect(again.json()).toEqual({ encryption_key_id: 'new', total: 1, healed: 0, recovered: 0, broken: 1 });
    const states = ok(await cli(['upstream-keys', 'list', '--provider', 'vault', '--json'])).json();
    expect(states.map((k: { state: string }) => k.state)).toEqual(['active', 'active', 'broken']);

    const audit = await api('GET', '/api/admin/audit?action=provider_key.heal');
    expect(audit.body.data).toHaveLength(2);
    expect(audit.body.data[1]).toMatchObject({
      action: 'provider_key.heal',
      target_type: 'provider_key',
      changes: { encryption_key_id: 'new', total: 3, healed: 2, recovered: 0, broken: 1 },
      request_id: expect.stringMatching(/^cli-/),
    });
  });

  it('a bad admin key → exit 1 with the API message and request id; a non-admin key → exit 1, 403; no key leaks into output', async () => {
    const wrong = newApiKey();
    const bad = await runCli(['status'], { env: { FLOODGATE_URL: gw.url, FLOODGATE_ADMIN_KEY: wrong } });
    const direct = await api('GET', '/api/admin/status', undefined, wrong);
    expect(direct.status).toBe(401);
    expect(bad.code).toBe(1);
    expect(bad.stdout).toBe('');
    expect(bad.stderr).toMatch(
      new RegExp(
        `^floodgate: ${direct.body.error.message}\n {2}HTTP 401, authentication_error \\(${direct.body.error.code}\\), request id cli-${UUID_RE.source}\n$`,
      ),
    );
    expect(bad.stderr).not.toContain(wrong);

    const userKey = ok(
      await cli(['keys', 'create', '--name', 'not-admin', '--role', 'user', '-q']),
    ).stdout.trim();
    for (const args of [['providers', 'list'], ['encryption', 'rotate'], ['keys', 'list'], ['status']]) {
      const r = await runCli(args, { env: { FLOODGATE_URL: gw.url, FLOODGATE_ADMIN_KEY: userKey } });
      expect(r.code, args.join(' ')).toBe(1);
      expect(r.stderr).toMatch(/\n {2}HTTP 403, permission_error/);
    }

    // --url wins over FLOODGATE_URL
    const viaFlag = await runCli(['providers', 'list', '--json', '--url', gw.url], {
      env: { FLOODGATE_URL: 'http://127.0.0.1:9', FLOODGATE_ADMIN_KEY: adminKey },
    });
    expect(
      ok(viaFlag)
        .json()
        .map((p: { name: string }) => p.name),
    ).toEqual(['fake', 'spare', 'vault']);
  });
});
