import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  ADMIN_KEY_PLACEHOLDER,
  bannerLines,
  QUICK_START_FOOTER,
  QUICK_START_SDK_TITLE,
  QUICK_START_TITLE,
} from '../../src/app/banner.js';
import { loadConfig } from '../../src/config/app-config.js';
import { newApiKey } from '../support/auth.js';
import { FakeProvider } from '../support/fake-provider.js';
import { freePort, getJson, spawnGateway, startGateway, type TestGateway } from '../support/gateway.js';

/**
 * The README quick start (its "## Quick start" section) and the first-run banner, run as a user would: the
 * ```sh blocks through bash + curl (+ node to pick fields out of the JSON answers), the ```js block
 * through node with the real `openai` package, against a fake OpenAI-compatible provider. Only
 * the clearly marked placeholders are substituted.
 */

const ROOT = join(dirname(new URL(import.meta.url).pathname), '..', '..');
/** The README's "## Quick start" section, up to the next second-level heading. */
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const DOC = README.slice(
  README.indexOf('## Quick start'),
  README.indexOf('\n## ', README.indexOf('## Quick start') + 3),
);

/** The placeholders of the README quick start and the banner, and nothing else, are substituted. */
const DOC_URL = 'http://localhost:3000';
const UPSTREAM_URL = 'https://api.openai.com/v1';
const UPSTREAM_KEY_PLACEHOLDER = 'sk-YOUR_UPSTREAM_KEY';
const UPSTREAM_KEY = 'sk-quickstart-upstream-0001';

function blocks(markdown: string, lang: string): string[] {
  return [...markdown.matchAll(new RegExp('^```' + lang + '\\n([\\s\\S]*?)^```$', 'gm'))].map((m) => m[1]!);
}

function substitute(text: string, pairs: [string, string][]): string {
  let out = text;
  for (const [from, to] of pairs) {
    expect(out, `placeholder ${from}`).toContain(from);
    out = out.split(from).join(to);
  }
  return out;
}

/** Commands only: comments and blank lines dropped (the banner and the docs word them differently). */
function commands(script: string): string[] {
  return script
    .split('\n')
    .map((l) => l.trimEnd())
    .filter((l) => l.trim() !== '' && !l.trim().startsWith('#'));
}

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * Runs the shell steps in one bash session (`-e -o pipefail`: any failing step fails the run),
 * then the SDK snippet with node in that same session (it reads FLOODGATE_API_KEY from step 3),
 * from the repository root so `import OpenAI from 'openai'` resolves as in a user's project.
 */
function runSteps(shell: string, js: string): Promise<Run> {
  const script = `${shell}\nnode --input-type=module -e "$QUICKSTART_JS"\n`;
  return new Promise((resolve) => {
    const proc = spawn('bash', ['-e', '-o', 'pipefail', '-c', script], {
      cwd: ROOT,
      env: {
        PATH: `${dirname(process.execPath)}:${process.env.PATH ?? ''}`,
        HOME: process.env.HOME ?? tmpdir(),
        QUICKSTART_JS: js,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    proc.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    proc.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    proc.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** What the five steps print: step 2's key (masked), step 4's completion JSON, step 5's text. */
function expectCompletion(run: Run, fake: FakeProvider): void {
  expect(run.code, `stdout:\n${run.stdout}\nstderr:\n${run.stderr}`).toBe(0);
  const lines = run.stdout.trim().split('\n');
  expect(lines).toHaveLength(3);
  const key = JSON.parse(lines[0]!);
  expect(key).toMatchObject({ label: 'primary', state: 'active', masked: 'sk-…0001' });
  expect(run.stdout).not.toContain(UPSTREAM_KEY);
  const completion = JSON.parse(lines[1]!);
  expect(completion).toMatchObject({
    object: 'chat.completion',
    model: 'gpt-4o-mini',
    choices: [{ message: { role: 'assistant', content: fake.text } }],
  });
  expect(lines[2]).toBe(fake.text);
  const upstream = fake.requests.filter((r) => r.path === '/v1/chat/completions');
  expect(upstream).toHaveLength(2);
  for (const r of upstream) {
    expect(r.key).toBe(UPSTREAM_KEY);
    expect(r.body).toMatchObject({
      model: 'gpt-4o-mini',
      messages: [{ role: 'user', content: 'Say hello' }],
    });
  }
}

beforeAll(() => {
  for (const tool of ['bash', 'curl']) {
    const found = spawnSync('sh', ['-c', `command -v ${tool}`]).status === 0;
    if (!found) throw new Error(`the quick start test needs ${tool} on PATH (apt-get install ${tool})`);
  }
});

describe('bannerLines', () => {
  const config = loadConfig({
    NODE_ENV: 'test',
    DATA_DIR: ':memory:',
    ENCRYPTION_KEYS: `k:${Buffer.alloc(32, 1).toString('base64')}`,
  });
  const db = { kind: 'embedded' as const, location: ':memory:' };
  const address = { host: '0.0.0.0', port: 3000 };

  it('adds the quick start only when asked; without a generated admin key it shows the placeholder, as the docs do', () => {
    const plain = bannerLines(config, db, address, []).join('\n');
    expect(plain).toContain('\nURLs\n  API        http://localhost:3000/v1  (OpenAI-compatible)\n');
    expect(plain).not.toContain(QUICK_START_TITLE);
    const key = newApiKey();
    const noted = bannerLines(
      config,
      db,
      address,
      [{ title: 'Some other note', lines: [`API key  ${key}`] }],
      {
        quickStart: true,
      },
    ).join('\n');
    // only the bootstrap admin's note gives the key; here (ADMIN_BOOTSTRAP_KEY, a restart) the docs' placeholder
    expect(noted).toContain(`export FLOODGATE_ADMIN_KEY=${ADMIN_KEY_PLACEHOLDER}\n`);
    const shell = noted.slice(
      noted.indexOf(QUICK_START_TITLE) + QUICK_START_TITLE.length,
      noted.indexOf(QUICK_START_SDK_TITLE),
    );
    expect(commands(shell)).toEqual(commands(blocks(DOC, 'sh').join('\n')));
    expect(noted.trimEnd().endsWith(QUICK_START_FOOTER)).toBe(true);
  });
});

describe('README quick start, verbatim', () => {
  let gw: TestGateway;
  let fake: FakeProvider;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    gw = await startGateway('embedded', { ADMIN_BOOTSTRAP_KEY: adminKey });
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  it('creates a provider, adds a key, issues a client key and gets a completion with curl and the openai SDK', async () => {
    const sh = blocks(DOC, 'sh');
    const js = blocks(DOC, 'js');
    expect(sh.length).toBeGreaterThanOrEqual(5); // the shell set-up and steps 1-4
    expect(js).toHaveLength(1); // step 5
    const shell = substitute(sh.join('\n'), [
      [DOC_URL, gw.url],
      [ADMIN_KEY_PLACEHOLDER, adminKey],
      [UPSTREAM_URL, fake.baseUrl],
      [UPSTREAM_KEY_PLACEHOLDER, UPSTREAM_KEY],
    ]);
    const sdk = substitute(js[0]!, [[DOC_URL, gw.url]]);

    expectCompletion(await runSteps(shell, sdk), fake);

    // the client key of step 3 is a `user` key of the admin, usable on /v1 only
    const keys = await getJson(`${gw.url}/api/admin/api-keys`, {
      headers: { authorization: `Bearer ${adminKey}` },
    });
    expect(keys.body.data).toEqual(
      expect.arrayContaining([expect.objectContaining({ name: 'my-app', role: 'user' })]),
    );
  });
});

describe('first run: the banner of a fresh `node dist/src/main.js`', () => {
  let fake: FakeProvider;
  let dataDir: string;
  const procs: ReturnType<typeof spawnGateway>[] = [];

  beforeAll(async () => {
    fake = await FakeProvider.start();
    dataDir = await mkdtemp(join(tmpdir(), 'fg-first-run-'));
  });
  afterAll(async () => {
    for (const p of procs) await p.stop();
    await fake?.close();
    await rm(dataDir, { recursive: true, force: true });
  });

  async function stopGracefully(p: ReturnType<typeof spawnGateway>): Promise<void> {
    p.proc.kill('SIGTERM');
    const code = await Promise.race([p.exited, new Promise((r) => setTimeout(() => r('timeout'), 15_000))]);
    if (code === 'timeout') await p.stop();
  }

  it('ends with the admin key (shown once), the URLs and a quick start that works when pasted', async () => {
    const port = await freePort();
    // a fresh machine: no configuration at all, only where to listen and a data directory
    const env = { PORT: String(port), HOST: '127.0.0.1', DATA_DIR: dataDir };
    const first = spawnGateway(env);
    procs.push(first);
    await first.waitForOutput(new RegExp(QUICK_START_FOOTER.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')), 60_000);
    const out = first.output();
    const banner = out.slice(out.lastIndexOf('\n', out.indexOf(' is up (')) + 1);
    const base = `http://127.0.0.1:${port}`;

    // one banner, in one piece, ending with the quick start (the start-up logs are flushed before
    // it, so it normally ends the output too; pino-pretty writes them from a worker thread, so on a
    // very loaded machine a late log line may still follow it)
    expect(out.split(' is up (')).toHaveLength(2);
    // no extension warning at start (TypeORM used to try CREATE EXTENSION "uuid-ossp" every time)
    expect(out.slice(0, out.indexOf(' is up ('))).not.toMatch(/uuid-ossp|extension/);
    const bannerText = banner.slice(0, banner.indexOf(QUICK_START_FOOTER) + QUICK_START_FOOTER.length);
    expect(bannerText).not.toMatch(/INFO|WARN/);
    expect(banner.slice(bannerText.length, bannerText.length + 2)).toBe('\n\n');
    for (const path of ['/v1', '/api/admin', '/docs', '/dashboard', '/health/ready'])
      expect(banner).toContain(`${base}${path}`);
    const adminKey = /API key {2}(fg_[A-Za-z0-9_-]{43})/.exec(banner)?.[1];
    expect(adminKey).toBeDefined();
    const at = (s: string) => banner.indexOf(s);
    expect(at('API key  fg_')).toBeGreaterThan(0);
    expect(at(`\nURLs\n  API        ${base}/v1`)).toBeGreaterThan(at('API key  fg_'));
    expect(at(QUICK_START_TITLE)).toBeGreaterThan(at(`\nURLs\n`));
    expect(at(QUICK_START_SDK_TITLE)).toBeGreaterThan(at(QUICK_START_TITLE));
    expect(at(QUICK_START_FOOTER)).toBeGreaterThan(at(QUICK_START_SDK_TITLE));
    const shell = banner
      .slice(at(QUICK_START_TITLE) + QUICK_START_TITLE.length, at(QUICK_START_SDK_TITLE))
      .trim();
    const js = banner
      .slice(at(QUICK_START_SDK_TITLE) + QUICK_START_SDK_TITLE.length, at(QUICK_START_FOOTER))
      .trim();
    expect(shell).toContain(`export FLOODGATE_URL=${base}\n`);
    expect(shell).toContain(`export FLOODGATE_ADMIN_KEY=${adminKey}\n`);

    // the banner's commands are the README's, with this gateway's URL and admin key filled in
    const docShell = blocks(DOC, 'sh').join('\n');
    const asDoc = (s: string) => s.split(base).join(DOC_URL).split(adminKey!).join(ADMIN_KEY_PLACEHOLDER);
    expect(commands(asDoc(shell))).toEqual(commands(docShell));
    expect(asDoc(js)).toBe(blocks(DOC, 'js')[0]!.trim());

    // pasted as printed (only the upstream URL and key are the user's own), they work
    const pasted = substitute(shell, [
      [UPSTREAM_URL, fake.baseUrl],
      [UPSTREAM_KEY_PLACEHOLDER, UPSTREAM_KEY],
    ]);
    expectCompletion(await runSteps(pasted, js), fake);

    // the next start prints neither the key (shown once) nor the quick start (a provider exists)
    await stopGracefully(first);
    const second = spawnGateway(env);
    procs.push(second);
    await second.waitForOutput(/ is up \(/, 60_000);
    await new Promise((r) => setTimeout(r, 200));
    const again = second.output();
    expect(again).toContain(`${base}/v1`);
    expect(again).not.toMatch(/fg_[A-Za-z0-9_-]{43}/);
    expect(again).not.toContain(adminKey);
    expect(again).not.toContain(QUICK_START_TITLE.split('\n')[0]);
    const me = await getJson(`${base}/api/me`, { headers: { authorization: `Bearer ${adminKey}` } });
    expect(me.body).toMatchObject({ role: 'admin' });
    await stopGracefully(second);
  });
});
