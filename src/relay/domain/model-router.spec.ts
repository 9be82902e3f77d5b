import { describe, expect, it } from 'vitest';
import { modelAllowed, routeModel } from './model-router.js';

const providers = [
  {
    id: '1',
    name: 'openai',
    models: ['gpt-4o', 'gpt-4o-mini', 'text-embedding-3-small'],
    kind: 'openai' as const,
  },
  {
    id: '2',
    name: 'nim',
    models: ['meta/*', 'nvidia/llama-3.1-nemotron-70b-instruct'],
    kind: 'openai' as const,
  },
  { id: '3', name: 'catch-all', models: ['*'], kind: 'openai' as const },
  { id: '4', name: 'meta-llama', models: ['meta/llama-*'], kind: 'openai' as const },
  { id: '5', name: 'a-openai-mirror', models: ['gpt-4o'], kind: 'openai' as const },
];

describe('routeModel', () => {
  it('prefers an exact id, ties broken by provider name', () => {
    expect(routeModel('gpt-4o', providers)).toMatchObject({
      provider: { name: 'a-openai-mirror' },
      exact: true,
    });
    expect(routeModel('gpt-4o-mini', providers)).toMatchObject({ provider: { name: 'openai' }, exact: true });
  });

  it('prefers the most specific pattern, and exact over any pattern', () => {
    expect(routeModel('meta/llama-3.1-8b-instruct', providers)).toMatchObject({
      provider: { name: 'meta-llama' },
      matched: 'meta/llama-*',
    });
    expect(routeModel('meta/codellama-70b', providers)).toMatchObject({
      provider: { name: 'nim' },
      matched: 'meta/*',
    });
    expect(routeModel('nvidia/llama-3.1-nemotron-70b-instruct', providers)).toMatchObject({
      provider: { name: 'nim' },
      exact: true,
    });
    expect(routeModel('mistral-large', providers)).toMatchObject({
      provider: { name: 'catch-all' },
      matched: '*',
    });
  });

  it('returns null when nothing matches, and treats regex characters literally', () => {
    expect(routeModel('x', providers.slice(0, 2))).toBeNull();
    expect(
      routeModel('gpt-4oXmini', [{ id: '1', name: 'p', models: ['gpt-4o.mini'], kind: 'openai' }]),
    ).toBeNull();
  });
});

describe('modelAllowed', () => {
  it('null allows all; ids and patterns restrict', () => {
    expect(modelAllowed('anything', null)).toBe(true);
    expect(modelAllowed('gpt-4o', ['gpt-4o'])).toBe(true);
    expect(modelAllowed('gpt-4o-mini', ['gpt-4o'])).toBe(false);
    expect(modelAllowed('meta/llama-3', ['meta/*'])).toBe(true);
    expect(modelAllowed('other/llama-3', ['meta/*'])).toBe(false);
    expect(modelAllowed('x', [])).toBe(false);
  });
});
