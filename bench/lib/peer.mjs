// The peer column: the Portkey AI gateway (an open-source Node LLM gateway on npm), run in its own
// process against the same fake upstream as Floodgate, measured in the same run.
//
// Installed at bench time into bench/.peer/ (its own package.json, git-ignored), never into the
// project's dependencies. Versions are pinned: @portkey-ai/gateway 1.15.2 (what issue 14 measured)
// with @hono/node-server and hono at the versions of Portkey's own package-lock.json for v1.15.2
// (1.13.5 / 4.9.7; the npm package only says ^1.3.3 / ^4.9.7, and a newer @hono/node-server breaks
// its streaming). If the install or the start fails, the caller skips the column and says why.
//
// Portkey is told where to send with headers: `x-portkey-provider: openai` +
// `x-portkey-custom-host: <fake upstream>/v1`. It drops unknown body fields, so the short streams
// the streaming probes ask for (`bench_deltas` / `bench_pace_ms` in the body) are also asked with
// headers it forwards (`x-portkey-forward-headers`), which the fake upstream reads too.
import { execFile } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { freePort } from './gateway.mjs';
import { sleep, spawnNode, stopChild, withTimeout } from './procs.mjs';

export const PORTKEY_VERSION = '1.15.2';
const PINS = { '@hono/node-server': '1.13.5', hono: '4.9.7' };
const DIR = new URL('../.peer/', import.meta.url).pathname;
const ENTRY = `${DIR}node_modules/@portkey-ai/gateway/build/start-server.js`;

const MANIFEST = {
  name: 'floodgate-bench-peer',
  private: true,
  description: 'Installed by bench/lib/peer.mjs at bench time; not a dependency of Floodgate.',
  dependencies: { '@portkey-ai/gateway': PORTKEY_VERSION, ...PINS },
  overrides: PINS,
};

function installedVersion(name) {
  try {
    return JSON.parse(readFileSync(`${DIR}node_modules/${name}/package.json`, 'utf8')).version;
  } catch {
    return null;
  }
}

/** Installs (once; reused while the pinned versions are in place) and returns the entry script. */
export async function installPortkey() {
  const wanted = { '@portkey-ai/gateway': PORTKEY_VERSION, ...PINS };
  if (existsSync(ENTRY) && Object.entries(wanted).every(([n, v]) => installedVersion(n) === v)) return ENTRY;
  mkdirSync(DIR, { recursive: true });
  writeFileSync(`${DIR}package.json`, `${JSON.stringify(MANIFEST, null, 2)}\n`);
  const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
  // --ignore-scripts: Portkey's postinstall (patch-package) has no patches in the published package.
  await promisify(execFile)(npm, ['install', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel=error', '--no-package-lock'], {
    cwd: DIR,
    timeout: 180_000,
  });
  for (const [n, v] of Object.entries(wanted)) {
    const got = installedVersion(n);
    if (got !== v) throw new Error(`${n}: installed ${got ?? 'nothing'}, wanted ${v}`);
  }
  return ENTRY;
}

/**
 * Starts Portkey (NODE_ENV=production, --headless: no UI, no log stream) on a free port. Returns
 * { url, pid, headers(upstreamUrl), close }.
 */
export async function startPortkey(upstreamUrl) {
  const entry = await installPortkey();
  const port = await freePort();
  const child = spawnNode([entry, `--port=${port}`, '--headless'], {
    cwd: DIR,
    env: { ...process.env, NODE_ENV: 'production', PORT: String(port) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output = [];
  for (const stream of [child.stdout, child.stderr]) createInterface({ input: stream }).on('line', (l) => output.length < 50 && output.push(l));
  const url = `http://127.0.0.1:${port}`;
  const headers = {
    'content-type': 'application/json',
    authorization: 'Bearer sk-portkey',
    'x-portkey-provider': 'openai',
    'x-portkey-custom-host': `${upstreamUrl}/v1`,
    'x-portkey-forward-headers': 'x-bench-deltas,x-bench-pace-ms',
  };
  await withTimeout(
    (async () => {
      for (;;) {
        if (child.exitCode !== null) throw new Error(`portkey exited (${child.exitCode}): ${output.slice(-5).join(' | ')}`);
        try {
          const r = await fetch(`${url}/v1/chat/completions`, {
            method: 'POST',
            headers,
            body: JSON.stringify({ model: 'bench-model', messages: [{ role: 'user', content: 'hi' }] }),
          });
          const text = await r.text();
          if (r.status === 200) return;
          throw new Error(`portkey answered ${r.status}: ${text.slice(0, 200)}`);
        } catch (err) {
          if (!/ECONNREFUSED|fetch failed/.test(`${err.message} ${err.cause?.code ?? ''}`)) throw err;
          await sleep(200);
        }
      }
    })(),
    30_000,
    'portkey start',
  );
  return { url, pid: child.pid, headers, close: () => stopChild(child, 3000) };
}
