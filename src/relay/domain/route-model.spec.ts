import { describe, expect, it } from 'vitest';
import { aliasJson, aliasSseEvent, routeTargetHeader, withModel } from './route-model.js';

describe('route model rewriting', () => {
  it('sends the target model upstream without touching the rest of the body', () => {
    const body = { model: 'chat-default', messages: [{ role: 'user', content: 'hi' }], temperature: 0 };
    const out = withModel(body, 'gpt-4o-mini');
    expect(out).toEqual({ ...body, model: 'gpt-4o-mini' });
    expect(body.model).toBe('chat-default'); // the client's body is not changed
  });

  it('shows the alias in a JSON answer', () => {
    const text = JSON.stringify({
      id: 'x',
      object: 'chat.completion',
      model: 'gpt-4o-mini-2024',
      choices: [],
    });
    expect(JSON.parse(aliasJson(text, 'chat-default'))).toEqual({
      id: 'x',
      object: 'chat.completion',
      model: 'chat-default',
      choices: [],
    });
  });

  it('leaves answers it cannot read, or without a model, as they came', () => {
    expect(aliasJson('not json', 'a')).toBe('not json');
    expect(aliasJson('[1,2]', 'a')).toBe('[1,2]');
    expect(aliasJson('{"data":[]}', 'a')).toBe('{"data":[]}');
    expect(aliasJson('{"model":"a"}', 'a')).toBe('{"model":"a"}');
  });

  it('shows the alias in an SSE event and keeps its other lines', () => {
    const event = 'event: chunk\nid: 7\ndata: {"id":"c","model":"gpt-4o-mini","choices":[]}';
    expect(aliasSseEvent(event, 'chat-default')).toBe(
      'event: chunk\nid: 7\ndata: {"id":"c","model":"chat-default","choices":[]}',
    );
    expect(aliasSseEvent('data: {"model":"m"}', 'alias')).toBe('data: {"model":"alias"}');
    expect(aliasSseEvent('data:{"model":"m"}\r\nid: 1', 'alias')).toBe('data: {"model":"alias"}\r\nid: 1');
  });

  it('passes [DONE], comments and events without a model through unchanged', () => {
    expect(aliasSseEvent('data: [DONE]', 'a')).toBe('data: [DONE]');
    expect(aliasSseEvent(': keep-alive', 'a')).toBe(': keep-alive');
    expect(aliasSseEvent('data: {"error":{"message":"x"}}', 'a')).toBe('data: {"error":{"message":"x"}}');
    expect(aliasSseEvent('data: {"model": broken', 'a')).toBe('data: {"model": broken');
  });

  it('names the target as provider/model', () => {
    expect(routeTargetHeader('openai', 'gpt-4o-mini')).toBe('openai/gpt-4o-mini');
    expect(routeTargetHeader('nim', 'meta/llama-3.1 8b')).toBe('nim/meta/llama-3.1 8b');
    // a header value can't carry characters past U+00FF: percent-encoded, as in a URL
    expect(routeTargetHeader('local', 'modèle-中文')).toBe('local/mod%C3%A8le-%E4%B8%AD%E6%96%87');
  });
});
