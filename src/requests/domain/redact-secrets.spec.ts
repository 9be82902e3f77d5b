import { describe, expect, it } from 'vitest';
import { capUtf8, REDACTED, redactSecrets } from './redact-secrets.js';

const FG = `fg_${'A1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v'}`;

describe('redactSecrets', () => {
  it.each([
    ['OpenAI key', 'my key is sk-proj-abcdefghijklmnop1234 ok', 'my key is [REDACTED] ok'],
    ['Anthropic key', 'sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv_wx-yz', REDACTED],
    ['Floodgate key', `use ${FG}.`, `use ${REDACTED}.`],
    [
      'Bearer token',
      'Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.abc.def',
      'Authorization: Bearer [REDACTED]',
    ],
    ['x-api-key header', 'x-api-key: abc123secret', `x-api-key: ${REDACTED}`],
    ['x-api-key JSON', '{"x-api-key": "abc\\"123", "a": 1}', `{"x-api-key": "${REDACTED}", "a": 1}`],
    ['api_key JSON', '{"api_key":"whatever"}', `{"api_key":"${REDACTED}"}`],
    ['password JSON', '{"password":"hunter2"}', `{"password":"${REDACTED}"}`],
    ['AWS access key id', 'id AKIAIOSFODNN7EXAMPLE here', `id ${REDACTED} here`],
    [
      'AWS secret env',
      'AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      `AWS_SECRET_ACCESS_KEY=${REDACTED}`,
    ],
    ['Google API key', `k=AIza${'x'.repeat(35)}`, `k=${REDACTED}`],
  ])('%s', (_name, input, expected) => {
    expect(redactSecrets(input)).toBe(expected);
  });

  it('leaves ordinary text alone', () => {
    const text =
      '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"ask about sk-short and fg_ and a task-list"}]}';
    expect(redactSecrets(text)).toBe(text);
  });

  it('redacts every occurrence, inside a JSON string too', () => {
    const body = JSON.stringify({
      messages: [{ content: `a sk-${'a'.repeat(40)} b sk-${'b'.repeat(40)} c ${FG}` }],
    });
    const out = redactSecrets(body);
    expect(out).not.toMatch(/sk-a|sk-b|fg_A1/);
    expect(out.split(REDACTED)).toHaveLength(4);
    expect(() => JSON.parse(out) as unknown).not.toThrow();
  });
});

describe('capUtf8', () => {
  it('keeps text within the cap whole', () => {
    expect(capUtf8('héllo', 6)).toEqual({ text: 'héllo', truncated: false });
  });

  it('cuts at the cap in UTF-8 bytes, never inside a character', () => {
    expect(capUtf8('abcdef', 4)).toEqual({ text: 'abcd', truncated: true });
    // é is 2 bytes: a cut at 2 bytes would split it
    expect(capUtf8('aé', 2)).toEqual({ text: 'a', truncated: true });
    const emoji = capUtf8('😀😀', 5);
    expect(emoji).toEqual({ text: '😀', truncated: true });
    expect(Buffer.byteLength(capUtf8('ü'.repeat(1000), 333).text)).toBeLessThanOrEqual(333);
  });
});
