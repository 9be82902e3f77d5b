import { spawnSync } from 'node:child_process';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { COMMANDS } from '../../src/cli/main.js';
import { newApiKey } from '../support/auth.js';
import { freePort } from '../support/gateway.js';
import { runCli } from './cli-runner.js';

/** What the CLI does before (or instead of) talking to a gateway: help, usage errors, exit codes. */
describe('floodgate CLI: help and usage errors (exit 2)', () => {
  const withKey = { env: { FLOODGATE_ADMIN_KEY: newApiKey() } };

  it('--help lists every command group; no arguments prints it on stderr and exits 2', async () => {
    const help = await runCli(['--help']);
    expect(help.code).toBe(0);
    for (const group of ['keys', 'users', 'providers', 'routes', 'upstream-keys', 'encryption', 'status'])
      expect(help.stdout).toMatch(new RegExp(`^  ${group} `, 'm'));
    expect(help.stdout).toContain('FLOODGATE_ADMIN_KEY');
    expect(help.stdout).toContain('Exit codes: 0 ok, 1');

    const bare = await runCli([]);
    expect(bare.code).toBe(2);
    expect(bare.stdout).toBe('');
    expect(bare.stderr).toContain('Usage: floodgate <command>');

    const version = await runCli(['--version']);
    expect(version.code).toBe(0);
    expect(version.stdout.trim()).toMatch(/^\d+\.\d+\.\d+/);
    // the compiled module runs by itself too (the Docker image has dist/ but not bin/)
    const direct = spawnSync(process.execPath, ['dist/src/cli/main.js', '--version'], { encoding: 'utf8' });
    expect(direct.status).toBe(0);
    expect(direct.stdout).toBe(version.stdout);
  });

  it('every command has --help (and `floodgate help <command>`), without needing a key or a gateway', async () => {
    expect(COMMANDS.map((c) => c.name).sort()).toEqual(
      [
        'encryption rotate',
        'keys create',
        'keys list',
        'keys revoke',
        'keys update',
        'providers add',
        'providers disable',
        'providers enable',
        'providers list',
        'routes create',
        'routes delete',
        'routes list',
        'status',
        'upstream-keys add',
        'upstream-keys disable',
        'upstream-keys enable',
        'upstream-keys list',
        'users create',
        'users list',
      ].sort(),
    );
    const results = await Promise.all(
      COMMANDS.map(async (c) => ({
        name: c.name,
        flag: await runCli([...c.name.split(' '), '--help'], {
          env: { FLOODGATE_URL: 'http://127.0.0.1:9' },
        }),
        word: await runCli(['help', ...c.name.split(' ')]),
      })),
    );
    for (const { name, flag, word } of results) {
      expect(flag.code, `${name} --help: ${flag.stderr}`).toBe(0);
      expect(flag.stdout).toMatch(new RegExp(`^Usage: floodgate ${name}`));
      expect(flag.stdout).toContain('--json');
      for (const option of Object.keys(COMMANDS.find((c) => c.name === name)!.options))
        expect(flag.stdout, `${name} documents --${option}`).toContain(`--${option}`);
      expect(word.code).toBe(0);
      expect(word.stdout).toBe(flag.stdout);
    }
    const group = await runCli(['upstream-keys', '--help']);
    expect(group.code).toBe(0);
    for (const action of ['add', 'list', 'disable', 'enable'])
      expect(group.stdout).toContain(`floodgate upstream-keys ${action}`);
  });

  it.each([
    [['frobnicate'], 'unknown command "frobnicate"', 'floodgate --help'],
    [['keys'], '"keys" needs a command: create, list, update, revoke', 'floodgate keys --help'],
    [
      ['keys', 'rotate'],
      'unknown command "keys rotate" (keys: create, list, update, revoke)',
      'floodgate keys --help',
    ],
    [['keys', 'list', '--bogus'], 'unknown option --bogus', 'floodgate keys list --help'],
    [['status', '--url'], 'option --url needs a value', 'floodgate status --help'],
    [['status', '--json=yes'], 'option --json takes no value', 'floodgate status --help'],
    [['keys', 'create', '--rpm', '60'], '--name is required', 'floodgate keys create --help'],
    [
      ['keys', 'create', '--name', 'x', '--rpm', 'lots'],
      '--rpm must be an integer 1-1000000, got "lots"',
      'floodgate keys create --help',
    ],
    [
      ['keys', 'create', '--name', 'x', '--max-priority', 'asap'],
      '--max-priority must be one of urgent, high, normal, low, got "asap"',
      'floodgate keys create --help',
    ],
    [['keys', 'revoke'], 'missing argument', 'floodgate keys revoke --help'],
    [['keys', 'revoke', 'abc'], '"abc" is not a key id', 'floodgate keys revoke --help'],
    [['providers', 'add', '--name', 'x'], '--base-url is required', 'floodgate providers add --help'],
    [
      ['providers', 'add', '--name', 'x', '--base-url', 'http://h/v1', '--header', 'nocolon'],
      '--header must look like "Name: value", got "nocolon"',
      'floodgate providers add --help',
    ],
    [['providers', 'disable'], 'missing argument', 'floodgate providers disable --help'],
    [['routes', 'create', '--target', 'a/b'], '--model is required', 'floodgate routes create --help'],
    [['routes', 'create', '--model', 'm'], '--target is required', 'floodgate routes create --help'],
    [
      ['routes', 'create', '--model', 'm', '--target', 'no-slash'],
      '--target must look like PROVIDER/MODEL[,weight=N][,tier=N], got "no-slash"',
      'floodgate routes create --help',
    ],
    [
      ['routes', 'create', '--model', 'm', '--target', 'a/b,weight=0'],
      '--target options are weight=1-1000 and tier=1-10, got "weight=0" in "a/b,weight=0"',
      'floodgate routes create --help',
    ],
    [['routes', 'delete'], 'missing argument', 'floodgate routes delete --help'],
    [['providers', 'list', 'extra'], 'unexpected argument "extra"', 'floodgate providers list --help'],
    [['users', 'create', '--email', 'a@b.c'], '--role is required', 'floodgate users create --help'],
    [
      ['users', 'list', '--role', 'root'],
      '--role must be one of admin, developer, user, viewer',
      'floodgate users list --help',
    ],
    [
      ['upstream-keys', 'add', '--label', 'l'],
      '--provider is required',
      'floodgate upstream-keys add --help',
    ],
    [
      ['upstream-keys', 'add', '--provider', 'p', '--label', 'l', '--key-env', 'FG_TEST_UNSET_VARIABLE'],
      '--key-env FG_TEST_UNSET_VARIABLE: the environment variable is not set or empty',
      'floodgate upstream-keys add --help',
    ],
    [
      ['upstream-keys', 'add', '--provider', 'p', '--label', 'l'],
      'no key value: use --key-env NAME, or pipe it on stdin',
      'floodgate upstream-keys add --help',
    ],
    [
      ['upstream-keys', 'disable', 'not-an-id'],
      '"not-an-id" is not an upstream key id',
      'floodgate upstream-keys disable --help',
    ],
    [['status', '--url', 'ftp://gateway'], '--url must be an http(s) URL', 'floodgate --help'],
  ])('%j → exit 2: %s', async (args, message, see) => {
    // FLOODGATE_URL points nowhere: a usage error is found before any network call
    const r = await runCli(args, { env: { ...withKey.env, FLOODGATE_URL: 'http://127.0.0.1:9' } });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stdout).toBe('');
    expect(r.stderr).toContain(`floodgate: ${message}`);
    expect(r.stderr).toContain(`(see ${see})`);
  });

  it('FLOODGATE_ADMIN_KEY missing → exit 2 saying so; FLOODGATE_URL not a URL → exit 2', async () => {
    const noKey = await runCli(['status']);
    expect(noKey.code).toBe(2);
    expect(noKey.stderr).toContain('FLOODGATE_ADMIN_KEY is not set');
    const badUrl = await runCli(['status'], { env: { ...withKey.env, FLOODGATE_URL: 'not a url' } });
    expect(badUrl.code).toBe(2);
    expect(badUrl.stderr).toContain(
      'FLOODGATE_URL must be an http(s) URL such as http://localhost:3000, got "not a url"',
    );
  });

  it('an unreachable gateway → exit 1 with the URL and the cause', async () => {
    const port = await freePort(); // nothing listens there any more
    const r = await runCli(['providers', 'list'], {
      env: { ...withKey.env, FLOODGATE_URL: `http://127.0.0.1:${port}` },
    });
    expect(r.code).toBe(1);
    expect(r.stdout).toBe('');
    expect(r.stderr).toBe(
      `floodgate: cannot reach the gateway at http://127.0.0.1:${port} (connect ECONNREFUSED 127.0.0.1:${port}): is it running? Set FLOODGATE_URL or --url\n`,
    );
  });

  it('bin/floodgate.js without a build says "run npm run build first" and exits 2', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fg-cli-nobuild-'));
    try {
      await mkdir(join(dir, 'bin'));
      await copyFile(join(process.cwd(), 'bin', 'floodgate.js'), join(dir, 'bin', 'floodgate.js'));
      await writeFile(join(dir, 'package.json'), '{"type": "module"}');
      const r = spawnSync(process.execPath, [join(dir, 'bin', 'floodgate.js'), 'status'], {
        encoding: 'utf8',
      });
      expect(r.status).toBe(2);
      expect(r.stderr).toContain('run npm run build first');
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
