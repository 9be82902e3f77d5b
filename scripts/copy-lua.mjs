#!/usr/bin/env node
// Copies every src/**/*.lua next to its compiled module in dist/src/ (tsc copies only TypeScript).
// Run by `npm run build` and by the e2e global setup.
import { cpSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';

function walk(dir) {
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) walk(path);
    else if (name.endsWith('.lua')) cpSync(path, join('dist', path));
  }
}
walk('src');
