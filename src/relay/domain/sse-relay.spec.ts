import { describe, expect, it } from 'vitest';
import { OpenAiStreamEvents, SseRelay, sseData } from './sse-relay.js';

const relayOf = (strip: boolean, alias: string | null = null) =>
  new SseRelay(new OpenAiStreamEvents(strip, alias));

const chunk = (content: string) =>
  `data: ${JSON.stringify({ choices: [{ index: 0, delta: { content } }], usage: null })}\n\n`;
const usageEvent = `data: ${JSON.stringify({ choices: [], usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 } })}\n\n`;

describe('SseRelay', () => {
  it('passes complete events through as they arrive and holds only the incomplete tail', () => {
    const relay = relayOf(false);
    const text = chunk('Hel') + chunk('lo');
    expect(relay.push(Buffer.from(text.slice(0, 10)))).toBe('');
    const rest = relay.push(Buffer.from(text.slice(10, text.length - 3)));
    expect(rest).toBe(chunk('Hel'));
    expect(relay.push(Buffer.from(text.slice(text.length - 3)))).toBe(chunk('lo'));
    expect(relay.reader.deliveredChars).toBe(5);
  });

  it('reads usage and strips the usage-only event when Floodgate asked for it', () => {
    const stripped = relayOf(true);
    const all = chunk('a') + usageEvent + 'data: [DONE]\n\n';
    expect(stripped.push(Buffer.from(all))).toBe(chunk('a') + 'data: [DONE]\n\n');
    expect(stripped.usage).toEqual({ prompt: 5, completion: 7, cached: 0 });
    expect((stripped.reader as OpenAiStreamEvents).sawDone).toBe(true);
    const kept = relayOf(false);
    expect(kept.push(Buffer.from(all))).toBe(all);
    expect(kept.completionTokens()).toBe(7);
  });

  it('estimates completion tokens from delivered content when the stream is cut short', () => {
    const relay = relayOf(true);
    relay.push(Buffer.from(chunk('12345678') + chunk('abcd')));
    expect(relay.usage).toBeNull();
    expect(relay.completionTokens()).toBe(3);
  });

  it('keeps multi-byte characters split across chunks intact, and CRLF separators', () => {
    const relay = relayOf(false);
    const text = `data: {"choices":[{"delta":{"content":"héllo"}}]}\r\n\r\n`;
    const bytes = Buffer.from(text);
    const cut = bytes.indexOf(Buffer.from('é')) + 1;
    expect(relay.push(bytes.subarray(0, cut))).toBe('');
    expect(relay.push(bytes.subarray(cut))).toBe(text);
    expect(relay.reader.deliveredChars).toBe(5);
  });

  it('passes comments and a trailing unterminated event through at the end', () => {
    const relay = relayOf(false);
    expect(relay.push(Buffer.from(': keep-alive\n\ndata: {"x":1}'))).toBe(': keep-alive\n\n');
    expect(relay.end()).toBe('data: {"x":1}');
  });

  it('shows the alias in every event of a routed stream, split anywhere, usage and [DONE] kept', () => {
    const ev = (content: string) =>
      `data: ${JSON.stringify({ id: 'c', model: 'gpt-4o-mini-2024', choices: [{ index: 0, delta: { content } }] })}\n\n`;
    const usage = `data: ${JSON.stringify({ id: 'c', model: 'gpt-4o-mini-2024', choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } })}\n\n`;
    const all = ev('Hel') + ev('lo') + usage + 'data: [DONE]\n\n';
    const relay = relayOf(true, 'chat-default');
    let out = '';
    for (let i = 0; i < all.length; i += 7) out += relay.push(Buffer.from(all.slice(i, i + 7)));
    out += relay.end();
    const events = out.split('\n\n').filter(Boolean);
    expect(events).toHaveLength(3); // the injected usage event is still stripped
    for (const e of events.slice(0, 2)) expect(JSON.parse(e.slice(6)).model).toBe('chat-default');
    expect(events[2]).toBe('data: [DONE]');
    expect(out).not.toContain('gpt-4o-mini-2024');
    expect(relay.usage?.completion).toBe(2);
    expect(relay.reader.deliveredChars).toBe(5);
  });

  it('without an alias, events pass byte for byte', () => {
    const text = `data: ${JSON.stringify({ model: 'gpt-4o-mini', choices: [] })}\n\n`;
    expect(relayOf(false).push(Buffer.from(text))).toBe(text);
  });

  it('sseData: the data of one event, one line or many', () => {
    expect(sseData('data: {"a":1}')).toBe('{"a":1}');
    expect(sseData('data:{"a":1}')).toBe('{"a":1}');
    expect(sseData('data:  x')).toBe(' x');
    expect(sseData(': comment')).toBeNull();
    expect(sseData('event: ping')).toBeNull();
    expect(sseData('')).toBeNull();
    expect(sseData('event: x\ndata: a\r\ndata:b')).toBe('a\nb');
    expect(sseData('id: 1\ndata: [DONE]')).toBe('[DONE]');
  });
});
