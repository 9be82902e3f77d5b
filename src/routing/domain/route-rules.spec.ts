import { describe, expect, it } from 'vitest';
import { aliasProblem, duplicateTargetProblems, routeProblems, targetCountProblem } from './route-rules.js';

const t = (providerId: string, model: string) => ({ providerId, model });
const P1 = '0b6f7a52-1d7e-4a8f-9a51-2b8f1c0e6d42';
const P2 = '1b6f7a52-1d7e-4a8f-9a51-2b8f1c0e6d42';

describe('route rules', () => {
  it('accepts ordinary aliases, including ones with slashes, dots and inner spaces', () => {
    for (const ok of ['chat-default', 'gpt-4o', 'org/model.v1', 'a', 'x'.repeat(255), 'two words'])
      expect(aliasProblem(ok), ok).toBeNull();
  });

  it('refuses empty, too long, patterns, control characters and outer whitespace, naming the field', () => {
    const cases: [string, RegExp][] = [
      ['', /1-255/],
      ['x'.repeat(256), /1-255/],
      ['gpt-*', /pattern/],
      ['*', /pattern/],
      ['a\tb', /control/],
      ['a\nb', /control/],
      ['a\u0000b', /control/],
      ['a\u007fb', /control/],
      ['a\u0085b', /control/],
      [' padded', /whitespace/],
      ['padded ', /whitespace/],
    ];
    for (const [bad, msg] of cases) {
      const p = aliasProblem(bad);
      expect(p, JSON.stringify(bad)).not.toBeNull();
      expect(p!.path).toBe('model');
      expect(p!.message).toMatch(msg);
    }
    expect(aliasProblem('a*', 'routes[2].model')!.message).toMatch(/^routes\[2\]\.model /);
  });

  it('finds repeated (provider, model) pairs and names the later target', () => {
    expect(duplicateTargetProblems([t(P1, 'm'), t(P2, 'm'), t(P1, 'n')])).toEqual([]);
    expect(duplicateTargetProblems([t(P1, 'm'), t(P2, 'm'), t(P1, 'm')])).toEqual([
      { path: 'targets[2]', message: 'targets[2] repeats targets[0] (same provider and model)' },
    ]);
    // uuids compare case-insensitively, models exactly
    expect(duplicateTargetProblems([t(P1, 'm'), t(P1.toUpperCase(), 'm')])).toHaveLength(1);
    expect(duplicateTargetProblems([t(P1, 'm'), t(P1, 'M')])).toHaveLength(0);
  });

  it('bounds the number of targets to 1..16', () => {
    expect(targetCountProblem(0)?.path).toBe('targets');
    expect(targetCountProblem(1)).toBeNull();
    expect(targetCountProblem(16)).toBeNull();
    expect(targetCountProblem(17)?.message).toMatch(/got 17/);
  });

  it('routeProblems checks only what is given (a PATCH may carry neither field)', () => {
    expect(routeProblems({})).toEqual([]);
    expect(routeProblems({ model: 'ok', targets: [t(P1, 'm')] })).toEqual([]);
    expect(routeProblems({ model: 'a*', targets: [] }).map((p) => p.path)).toEqual(['model', 'targets']);
  });
});
