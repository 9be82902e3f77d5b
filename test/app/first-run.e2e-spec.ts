import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { freePort } from '../support/gateway.js';

// `npm start` as a person sees it: the built app with no configuration (development, pretty logs,
// LOG_LEVEL info), a fresh data directory. What it prints first, and what it no longer prints.

/** Nest's own start-up lines (module init, controllers, routes, application start). */
const FRAMEWORK_LINE =
  /Starting Nest application|dependencies initialized|Mapped \{|Controller \{\/|Nest application successfully started|"context":"(NestFactory|InstanceLoader|RoutesResolver|RouterExplorer|NestApplication)"/;

interface Started {
  proc: ChildProcess;
  stdout: () => string;
  waitFor: (pattern: RegExp, timeoutMs?: number) => Promise<void>;
}

const procs: ChildProcess[] = [];
const dirs: string[] = [];
afterEach(async () => {
  for (const p of procs.splice(0)) {
    if (p.exitCode === null) {
      p.kill('SIGKILL');
      await new Promise((r) => p.once('exit', r));
    }
  }
  for (const d of dirs.splice(0)) await rm(d, { recursive: true, force: true });
});

async function startAsUser(extra: Record<string, string> = {}): Promise<Started & { base: string }> {
  const dataDir = await mkdtemp(join(tmpdir(), 'fg-first-run-'));
  dirs.push(dataDir);
  const port = await freePort();
  // Only what a person has: PATH, where to listen, and a data directory of its own.
  const env = {
    PATH: process.env.PATH ?? '',
    PORT: String(port),
    HOST: '127.0.0.1',
    DATA_DIR: dataDir,
    ...extra,
  };
  const proc = spawn(process.execPath, ['dist/src/main.js'], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  procs.push(proc);
  let out = '';
  let err = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  return {
    proc,
    base: `http://127.0.0.1:${port}`,
    stdout: () => out,
    waitFor: async (pattern, timeoutMs = 60_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(out)) {
        if (proc.exitCode !== null) throw new Error(`exited (${proc.exitCode}):\n${out}\n${err}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${out}\n${err}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}

describe('first run: what `npm start` prints', () => {
  it('a first line saying what it waits for, then a few lines, then the banner; no framework lines', async () => {
    const p = await startAsUser();
    await p.waitFor(/ is up \(/);
    const out = p.stdout();
    const lines = out.split('\n');

    // the very first line, written before anything starts
    expect(lines[0]).toMatch(
      /^Floodgate \S+ starting in embedded mode: starting embedded Postgres \(PGlite\) in \//,
    );

    // the banner comes within a handful of lines (PGlite ready, migrations applied, the admin
    // created, the ENCRYPTION_KEYS warning), before any framework line: there is none at all
    const bannerAt = lines.findIndex((l) => / is up \(/.test(l));
    expect(bannerAt).toBeGreaterThan(0);
    expect(bannerAt).toBeLessThanOrEqual(8);
    expect(out).not.toMatch(FRAMEWORK_LINE);
    expect(out).not.toMatch(/applied migration /); // the per-migration list is at debug level
    const before = lines.slice(0, bannerAt).join('\n');
    expect(before).toMatch(/embedded Postgres \(PGlite\) ready in \d+ ms/);
    expect(before).toMatch(/\d+ migration\(s\) applied in \d+ ms/);
    expect(before).toMatch(/WARN.*ENCRYPTION_KEYS is not set/); // warnings always shown

    // the banner: mode, the URLs, the admin key shown once
    const banner = lines.slice(bannerAt).join('\n');
    expect(banner).toContain('mode       embedded');
    for (const path of ['/v1', '/docs', '/dashboard']) expect(banner).toContain(`${p.base}${path}`);
    expect(banner).toMatch(/Bootstrap admin created[\s\S]*API key {2}fg_/);

    // one access line per request, still at the default level
    const res = await fetch(`${p.base}/v1/models`);
    expect(res.status).toBe(401);
    const requestId = res.headers.get('x-request-id')!;
    await p.waitFor(new RegExp(requestId));
    expect(
      p
        .stdout()
        .split('\n')
        .filter((l) => l.includes(requestId)),
    ).toHaveLength(1);
    expect(p.stdout()).toMatch(/GET \/v1\/models 401/);
    expect(p.stdout()).not.toMatch(FRAMEWORK_LINE);
  });

  it('LOG_LEVEL=debug still shows the route mapping and the applied migrations', async () => {
    const p = await startAsUser({ LOG_LEVEL: 'debug' });
    await p.waitFor(/ is up \(/);
    const out = p.stdout();
    expect(out).toMatch(/DEBUG.*Mapped \{\/v1\/chat\/completions, POST\} route/);
    expect(out).toMatch(/DEBUG.*dependencies initialized/);
    expect(out).toMatch(/DEBUG.*applied migration Init\d+/);
    expect(out.split('\n')[0]).toMatch(/starting in embedded mode/);
  });

  it('LOG_FORMAT=json: the first line is a JSON line saying what it waits for; no framework lines', async () => {
    const p = await startAsUser({ LOG_FORMAT: 'json' });
    await p.waitFor(/"floodgate started"/);
    const lines = p
      .stdout()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as { msg: string; banner?: string[] });
    expect(lines[0]!.msg).toMatch(/starting in embedded mode: starting embedded Postgres/);
    expect(p.stdout()).not.toMatch(FRAMEWORK_LINE);
    expect(lines.find((l) => l.msg === 'floodgate started')?.banner?.join('\n')).toContain(`${p.base}/docs`);
  });
});
