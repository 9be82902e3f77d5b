#!/usr/bin/env node
// `npm start` (and dev, migration:*, bench): builds dist/ only when something it is built from has
// changed since the last build this script made. `npm run build` always builds.
//
// The stamp (dist/.build-stamp.json) lists, for every input, its size and modification time as they
// were when that build started (an edit made while tsc runs is seen by the next start), plus
// dist/.tsbuildinfo as the build left it: a build made by anything else (`npm run build`, the e2e
// global setup) rewrites that file when it compiles something, so the next start builds again
// rather than trust a dist/ this script did not make. A deleted or added input changes the list.
// Written only after a successful build. `--force` builds regardless.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

export const STAMP_FILE = 'dist/.build-stamp.json';
export const BUILD_INFO = 'dist/.tsbuildinfo';
export const ENTRY = 'dist/src/main.js';
/** Directories whose files (other than unit tests) are compiled or copied into dist/. */
const INPUT_DIRS = ['src', 'migrations'];
/** Single files that change what the build produces. */
const INPUT_FILES = ['tsconfig.json', 'tsconfig.build.json', 'package-lock.json', 'scripts/copy-lua.mjs'];

/** One file's stamp: size and modification time (a touch, an edit or a checkout changes it). */
export function fileStamp(stat) {
  return `${stat.size}:${Math.round(stat.mtimeMs)}`;
}

/** Input files under `root`, as paths relative to it with `/` separators, mapped to their stamps. */
export function collectInputs(root) {
  const files = {};
  const walk = (dir) => {
    let names;
    try {
      names = readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const entry of names) {
      const path = join(dir, entry.name);
      if (entry.isDirectory()) walk(path);
      else if (entry.isFile() && !entry.name.endsWith('.spec.ts')) add(path);
    }
  };
  const add = (path) => {
    try {
      files[relative(root, path).split(sep).join('/')] = fileStamp(statSync(path));
    } catch {
      // vanished between listing and stat: absent, which the comparison sees
    }
  };
  for (const dir of INPUT_DIRS) walk(join(root, dir));
  for (const file of INPUT_FILES) if (existsSync(join(root, file))) add(join(root, file));
  return files;
}

/**
 * Why dist/ must be rebuilt, or null when it is current. `saved` is the stamp the last build wrote
 * (null when there is none), `current` the inputs now (collectInputs) plus the build info's stamp,
 * `hasEntry` whether dist/src/main.js exists. Pure: unit-tested in test/unit/build-if-stale.spec.ts.
 */
export function staleReason(saved, current, hasEntry) {
  if (!hasEntry) return 'no build yet';
  if (!saved || typeof saved !== 'object' || typeof saved.files !== 'object' || saved.files === null)
    return 'no record of the last build';
  const changed = [];
  for (const [path, stamp] of Object.entries(current)) {
    if (saved.files[path] !== stamp) changed.push(path in saved.files ? path : `${path} (new)`);
  }
  for (const path of Object.keys(saved.files)) if (!(path in current)) changed.push(`${path} (deleted)`);
  if (changed.length === 0) return null;
  changed.sort();
  const shown = changed.slice(0, 3).join(', ');
  return `${changed.length} file(s) changed since the last build: ${shown}${changed.length > 3 ? ', …' : ''}`;
}

function readStamp(root) {
  try {
    return JSON.parse(readFileSync(join(root, STAMP_FILE), 'utf8'));
  } catch {
    return null;
  }
}

function buildInfoStamp(root) {
  try {
    return { [BUILD_INFO]: fileStamp(statSync(join(root, BUILD_INFO))) };
  } catch {
    return {};
  }
}

function run(root, args) {
  const result = spawnSync(process.execPath, args, { cwd: root, stdio: 'inherit' });
  return result.status ?? 1;
}

/** Builds when stale (or when forced); returns the exit status (0 = dist/ current). */
export function buildIfStale(root, { force = false, log = (line) => process.stderr.write(`${line}\n`) } = {}) {
  const inputs = collectInputs(root);
  const reason = force
    ? 'forced'
    : staleReason(readStamp(root), { ...inputs, ...buildInfoStamp(root) }, existsSync(join(root, ENTRY)));
  if (reason === null) return 0;
  const started = Date.now();
  log(
    `floodgate: compiling TypeScript into dist/ (${reason})… (a full build takes 5-30 s on 2 cores; a start with nothing changed skips it)`,
  );
  const status = run(root, ['node_modules/typescript/bin/tsc', '-p', 'tsconfig.build.json']);
  if (status !== 0) {
    log('floodgate: the build failed (errors above); dist/ was not started');
    return status;
  }
  const copied = run(root, ['scripts/copy-lua.mjs']);
  if (copied !== 0) return copied;
  writeFileSync(
    join(root, STAMP_FILE),
    `${JSON.stringify({ files: { ...inputs, ...buildInfoStamp(root) } }, null, 0)}\n`,
  );
  log(`floodgate: built in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const root = join(fileURLToPath(new URL('.', import.meta.url)), '..');
  process.exit(buildIfStale(root, { force: process.argv.includes('--force') }));
}
