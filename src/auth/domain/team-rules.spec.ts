import { describe, expect, it } from 'vitest';
import { intersectAllowedModels, keyTeam, microsToUsd, tighterPriority, usdToMicros } from './team-rules.js';

/** The relay's rule (model-router.ts modelAllowed), restated: any entry matches. */
function allowed(list: string[] | null, model: string): boolean {
  if (list === null) return true;
  return list.some((e) =>
    e.includes('*')
      ? new RegExp(
          `^${e
            .split('*')
            .map((s) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
            .join('.*')}$`,
        ).test(model)
      : e === model,
  );
}

describe('intersectAllowedModels', () => {
  it('null on either side is "all": the other list applies as is', () => {
    expect(intersectAllowedModels(null, null)).toBeNull();
    expect(intersectAllowedModels(['a'], null)).toEqual(['a']);
    expect(intersectAllowedModels(null, ['b*'])).toEqual(['b*']);
  });

  it('ids and contained patterns: allows exactly what both lists allow', () => {
    const cases: [string[], string[]][] = [
      [['gpt-4o', 'gpt-4o-mini', 'claude-3'], ['gpt-*']],
      [['gpt-*'], ['gpt-4o*', 'llama-3']],
      [['*'], ['a', 'b/*']],
      [
        ['meta-llama/*', 'x'],
        ['meta-llama/llama-3*', 'x', 'y'],
      ],
      [[], ['a']],
    ];
    const models = [
      'gpt-4o',
      'gpt-4o-mini',
      'gpt-3.5',
      'claude-3',
      'llama-3',
      'a',
      'b/c',
      'x',
      'y',
      'meta-llama/llama-3-8b',
      'meta-llama/other',
      '*',
    ];
    for (const [key, team] of cases) {
      const folded = intersectAllowedModels(key, team);
      for (const m of models)
        expect(allowed(folded, m), `${JSON.stringify([key, team])} ${m}`).toBe(
          allowed(key, m) && allowed(team, m),
        );
    }
  });

  it('two patterns that only overlap contribute nothing (never wider than both)', () => {
    const folded = intersectAllowedModels(['gpt-*'], ['*-mini']);
    expect(folded).toEqual([]);
    expect(allowed(folded, 'gpt-4o-mini')).toBe(false);
  });
});

describe('priority ceiling', () => {
  it('the lower priority ceiling wins, whichever side it is on', () => {
    expect(tighterPriority('urgent', 'normal')).toBe('normal');
    expect(tighterPriority('low', 'high')).toBe('low');
    expect(tighterPriority('high', 'high')).toBe('high');
  });
});

describe('money', () => {
  it('USD ↔ integer micro-dollars, 6 decimals at most', () => {
    expect(usdToMicros(250)).toBe(250_000_000);
    expect(usdToMicros(0.000001)).toBe(1);
    expect(usdToMicros(12.345678)).toBe(12_345_678);
    expect(microsToUsd(12_345_678)).toBe(12.345678);
  });
});

describe('keyTeam', () => {
  it("defaults to the owner's team and accepts only it", () => {
    expect(keyTeam(undefined, 't1')).toEqual({ ok: true, teamId: 't1' });
    expect(keyTeam(undefined, null)).toEqual({ ok: true, teamId: null });
    expect(keyTeam('t1', 't1')).toEqual({ ok: true, teamId: 't1' });
    expect(keyTeam(null, null)).toEqual({ ok: true, teamId: null });
    expect(keyTeam('t2', 't1').ok).toBe(false);
    expect(keyTeam(null, 't1').ok).toBe(false);
    expect(keyTeam('t1', null).ok).toBe(false);
  });
});
