import { describe, expect, it } from 'vitest';
import { MAX_JSON_DEPTH, tooDeepAt, unsafeInputProblems, unstorableReason } from './input-safety.js';

const nest = (depth: number): unknown => {
  let v: unknown = 1;
  for (let i = 0; i < depth; i++) v = [v];
  return v;
};

describe('input safety', () => {
  it.each([
    ['plain', 'hello', null],
    ['emoji (a surrogate pair)', 'a😀b', null],
    ['NUL', 'a\u0000b', 'a NUL character (\\u0000)'],
    ['lone high surrogate', 'a\ud800', 'an unpaired UTF-16 surrogate'],
    ['lone high surrogate before text', '\ud800x', 'an unpaired UTF-16 surrogate'],
    ['lone low surrogate', '\udc00', 'an unpaired UTF-16 surrogate'],
    ['reversed pair', '\ude00\ud83d', 'an unpaired UTF-16 surrogate'],
  ])('%s', (_name, s, reason) => {
    expect(unstorableReason(s)).toBe(reason);
  });

  it('finds every unsafe value and key with its path', () => {
    expect(
      unsafeInputProblems({
        name: 'ok',
        models: ['a', 'b\u0000'],
        headers: { 'x\ud800': 'v' },
        limits: { rpm: 2 ** 60 },
      }).map((p) => p.path),
    ).toEqual(['models[1]', 'headers', 'limits.rpm']);
    expect(unsafeInputProblems('x\u0000', 'id')).toEqual([
      { path: 'id', message: 'id must not contain a NUL character (\\u0000)' },
    ]);
    expect(unsafeInputProblems({ a: [1, 'two', { b: Number.MAX_SAFE_INTEGER }] })).toEqual([]);
  });

  it('measures depth iteratively and names the top-level field', () => {
    expect(tooDeepAt({ messages: [{ content: [{ type: 'text' }] }] })).toBeNull();
    expect(tooDeepAt(nest(MAX_JSON_DEPTH))).toBeNull();
    expect(tooDeepAt(nest(MAX_JSON_DEPTH + 1))).toBe('[0]');
    expect(tooDeepAt({ model: 'm', messages: nest(MAX_JSON_DEPTH) })).toBe('messages');
    expect(tooDeepAt(JSON.parse('['.repeat(100_000) + ']'.repeat(100_000)))).toBe('[0]');
    expect(tooDeepAt('text')).toBeNull();
  });
});
