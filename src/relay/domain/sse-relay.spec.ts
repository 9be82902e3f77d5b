import { describe, expect, it } from 'vitest';
import { SseRelay } from './sse-relay.js';

const chunk = (content: string) =>
  `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }], usage: null })}\n\n`;
const usageEvent = `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } })}\n\n`;

describe('SseRelay', () => {
  it('passes complete events through as they arrive and holds only the incomplete tail', () => {
    const relay = new SseRelay(false);
    const text = chunk('Hel') + chunk('lo');
    expect(relay.push(Buffer.from(text.slice(0, 10)))).toBe('');
    const rest = relay.push(Buffer.from(text.slice(10, text.length - 3)));
    expect(rest).toBe(chunk('Hel'));
    expect(relay.push(Buffer.from(text.slice(text.length - 3)))).toBe(chunk('lo'));
    expect(relay.deliveredChars).toBe(5);
  });

  it('reads usage and strips the usage-only event when Floodgate asked for it', () => {
    const stripped = new SseRelay(true);
    const all = chunk('a') + usageEvent + 'data: [DONE]\n\n';
    expect(stripped.push(Buffer.from(all))).toBe(chunk('a') + 'data: [DONE]\n\n');
    expect(stripped.usage).toEqual({ prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 });
    expect(stripped.sawDone).toBe(true);
    const kept = new SseRelay(false);
    expect(kept.push(Buffer.from(all))).toBe(all);
    expect(kept.completionTokens()).toBe(7);
  });

  it('estimates completion tokens from delivered content when the stream is cut short', () => {
    const relay = new SseRelay(true);
    relay.push(Buffer.from(chunk('12345678') + chunk('abcd')));
    expect(relay.usage).toBeNull();
    expect(relay.completionTokens()).toBe(3);
  });

  it('keeps multi-byte characters split across chunks intact, and CRLF separators', () => {
    const relay = new SseRelay(false);
    const text = `data: {"choices":[{"delta":{"content":"héllo"}}]}\r\n\r\n`;
    const bytes = Buffer.from(text);
    const cut = bytes.indexOf(Buffer.from('é')) + 1;
    expect(relay.push(bytes.subarray(0, cut))).toBe('');
    expect(relay.push(bytes.subarray(cut))).toBe(text);
    expect(relay.deliveredChars).toBe(5);
  });

  it('passes comments and a trailing unterminated event through at the end', () => {
    const relay = new SseRelay(false);
    expect(relay.push(Buffer.from(': keep-alive\n\ndata: {"x":1}'))).toBe(': keep-alive\n\n');
    expect(relay.end()).toBe('data: {"x":1}');
  });
});
