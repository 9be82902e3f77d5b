import { mkdir, mkdtemp, rm, unlink, utimes, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BUILD_INFO, collectInputs, staleReason } from '../../scripts/build-if-stale.mjs';

// scripts/build-if-stale.mjs (`npm start`): the decision only, over file stamps in a scratch
// directory; no tsc is run here.

let root: string;
beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'fg-stale-'));
  await mkdir(join(root, 'src/app'), { recursive: true });
  await mkdir(join(root, 'migrations'), { recursive: true });
  await writeFile(join(root, 'src/main.ts'), 'export {};\n');
  await writeFile(join(root, 'src/app/banner.ts'), 'export const a = 1;\n');
  await writeFile(join(root, 'src/app/banner.spec.ts'), 'test\n');
  await writeFile(join(root, 'src/app/script.lua'), 'return 1\n');
  await writeFile(join(root, 'migrations/index.ts'), 'export {};\n');
  await writeFile(join(root, 'tsconfig.json'), '{}\n');
  await writeFile(join(root, 'package-lock.json'), '{}\n');
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

/** What the script writes after a build: the inputs, plus the build info the build left. */
const saved = (files: Record<string, string>) => ({ files: { ...files, [BUILD_INFO]: '10:1000' } });
const now = (files: Record<string, string>, buildInfo = '10:1000') => ({ ...files, [BUILD_INFO]: buildInfo });

describe('build-if-stale', () => {
  it('inputs: sources, migrations, .lua files and the build configuration; not unit tests', () => {
    expect(Object.keys(collectInputs(root)).sort()).toEqual([
      'migrations/index.ts',
      'package-lock.json',
      'src/app/banner.ts',
      'src/app/script.lua',
      'src/main.ts',
      'tsconfig.json',
    ]);
  });

  it('nothing changed since the last build: no build', () => {
    const stamp = saved(collectInputs(root));
    expect(staleReason(stamp, now(collectInputs(root)), true)).toBeNull();
  });

  it('a changed source (even only touched) rebuilds and names it', async () => {
    const stamp = saved(collectInputs(root));
    const later = new Date(Date.now() + 5000);
    await utimes(join(root, 'src/app/banner.ts'), later, later);
    expect(staleReason(stamp, now(collectInputs(root)), true)).toMatch(
      /1 file\(s\) changed.*src\/app\/banner\.ts/,
    );
  });

  it('a deleted and an added source rebuild', async () => {
    const stamp = saved(collectInputs(root));
    await unlink(join(root, 'src/app/banner.ts'));
    expect(staleReason(stamp, now(collectInputs(root)), true)).toMatch(/src\/app\/banner\.ts \(deleted\)/);
    await writeFile(join(root, 'src/app/other.ts'), 'export {};\n');
    expect(staleReason(stamp, now(collectInputs(root)), true)).toMatch(/src\/app\/other\.ts \(new\)/);
  });

  it('a changed tsconfig or package-lock rebuilds', async () => {
    const stamp = saved(collectInputs(root));
    await writeFile(join(root, 'package-lock.json'), '{"lockfileVersion": 3}\n');
    expect(staleReason(stamp, now(collectInputs(root)), true)).toMatch(/package-lock\.json/);
  });

  it('a unit test file changing does not rebuild (it is not compiled into dist/)', async () => {
    const stamp = saved(collectInputs(root));
    await writeFile(join(root, 'src/app/banner.spec.ts'), 'changed\n');
    expect(staleReason(stamp, now(collectInputs(root)), true)).toBeNull();
  });

  it('dist/ rebuilt by something else (npm run build, the e2e setup) since: rebuild rather than trust it', () => {
    const stamp = saved(collectInputs(root));
    expect(staleReason(stamp, now(collectInputs(root), '12:2000'), true)).toMatch(/\.tsbuildinfo/);
  });

  it('no stamp, an unreadable stamp, or no dist/src/main.js: build', () => {
    const inputs = now(collectInputs(root));
    expect(staleReason(null, inputs, true)).toBe('no record of the last build');
    expect(staleReason({ nonsense: true } as never, inputs, true)).toBe('no record of the last build');
    expect(staleReason(saved(collectInputs(root)), inputs, false)).toBe('no build yet');
  });
});
