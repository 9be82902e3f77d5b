import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PackageInfo {
  name: string;
  version: string;
  description: string;
  root: string;
}

let cached: PackageInfo | undefined;

/** package.json of Floodgate itself, found by walking up from this file (src/ or dist/src/ alike). Read once at start. */
export function packageInfo(): PackageInfo {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    const candidate = join(dir, 'package.json');
    if (existsSync(candidate)) {
      const pkg = JSON.parse(readFileSync(candidate, 'utf8')) as Partial<PackageInfo>;
      if (pkg.name === 'floodgate') {
        cached = {
          name: pkg.name,
          version: pkg.version ?? '0.0.0',
          description: pkg.description ?? '',
          root: dir,
        };
        return cached;
      }
    }
    dir = dirname(dir);
  }
  cached = { name: 'floodgate', version: '0.0.0', description: '', root: process.cwd() };
  return cached;
}
