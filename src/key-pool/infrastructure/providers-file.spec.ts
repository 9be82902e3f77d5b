import { describe, expect, it } from 'vitest';
import { parseProvidersFile, ProvidersFileError } from './providers-file.js';

const file = (pricing: string) => `
providers:
  - name: openai
    base_url: https://api.openai.com/v1
    models: [gpt-4o-mini]
    pricing:
${pricing}
    keys:
      - label: primary
        key: env:OPENAI_KEY
`;

describe('PROVIDERS_FILE pricing', () => {
  it('takes a provider’s pricing like the admin API', () => {
    const [p] = parseProvidersFile(
      'p.yaml',
      file('      gpt-4o-mini: {input_per_mtok: 0.15, output_per_mtok: 0.6, cached_input_per_mtok: 0.075}'),
      { OPENAI_KEY: 'sk-test' },
    );
    expect(p!.dto.pricing).toEqual({
      'gpt-4o-mini': { input_per_mtok: 0.15, output_per_mtok: 0.6, cached_input_per_mtok: 0.075 },
    });
  });

  it('reports a bad price with its path', () => {
    let problems: string[] = [];
    try {
      parseProvidersFile('p.yaml', file('      gpt-4o-mini: {input_per_mtok: -1, output_per_mtok: 0.6}'), {
        OPENAI_KEY: 'sk-test',
      });
    } catch (err) {
      problems = (err as ProvidersFileError).problems;
    }
    expect(problems).toHaveLength(1);
    expect(problems[0]).toMatch(/^providers\[0\]\.pricing\.gpt-4o-mini\.input_per_mtok must be a number/);
  });
});

describe('PROVIDERS_FILE kind', () => {
  const kindFile = (kind: string) => `
providers:
  - name: claude
${kind}
    base_url: https://api.anthropic.com/v1
    models: ["claude-*"]
`;

  it('takes a provider’s kind (absent: the admin API’s default applies)', () => {
    expect(parseProvidersFile('p.yaml', kindFile('    kind: anthropic'), {})[0]!.dto.kind).toBe('anthropic');
    expect(parseProvidersFile('p.yaml', kindFile(''), {})[0]!.dto.kind).toBeUndefined();
  });

  it('reports a bad kind with its path', () => {
    let problems: string[] = [];
    try {
      parseProvidersFile('p.yaml', kindFile('    kind: gemini'), {});
    } catch (err) {
      problems = (err as ProvidersFileError).problems;
    }
    expect(problems).toEqual(['providers[0].kind: kind must be one of openai, anthropic']);
  });
});
