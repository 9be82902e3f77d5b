import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { permissionMatrixMarkdown } from './roles.js';

describe('docs/auth.md', () => {
  it('carries the permission matrix exactly as PERMISSIONS defines it', () => {
    const doc = readFileSync(fileURLToPath(new URL('../../docs/auth.md', import.meta.url)), 'utf8');
    const table = /<!-- permission-matrix:start -->\n([\s\S]*?)\n<!-- permission-matrix:end -->/.exec(
      doc,
    )?.[1];
    expect(table).toBeDefined();
    expect(table).toBe(permissionMatrixMarkdown());
  });
});
