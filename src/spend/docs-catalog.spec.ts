import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { CATALOG_PRICES_AS_OF, PRICE_CATALOG } from './domain/price-catalog.js';

describe('docs/spend.md', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../docs/spend.md', import.meta.url)), 'utf8');

  it('lists exactly the catalog, with its date', () => {
    const rows = doc
      .split('\n')
      .filter((l) => /^\| `[^`]+` \| [\d.]+ \|/.test(l))
      .filter((l) => l.split('|').length === 6);
    const expected = Object.entries(PRICE_CATALOG).map(
      ([m, p]) => `| \`${m}\` | ${p.input_per_mtok} | ${p.cached_input_per_mtok} | ${p.output_per_mtok} |`,
    );
    expect(rows).toEqual(expected);
    expect(doc).toContain(`**${CATALOG_PRICES_AS_OF}**`);
  });
});
