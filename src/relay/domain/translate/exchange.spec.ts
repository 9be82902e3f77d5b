import { describe, expect, it } from 'vitest';
import { exchangeFor } from '../exchange.js';

describe('anthropic:chat exchange', () => {
  it('serves chat/completions on an anthropic provider at /messages, translated both ways', () => {
    const exchange = exchangeFor('chat', 'anthropic');
    expect(exchange?.name).toBe('anthropic:chat');
    expect(exchange?.path).toBe('/messages');
    const payload = exchange!.payload(
      {
        model: 'claude',
        messages: [
          { role: 'system', content: 's' },
          { role: 'user', content: 'hi' },
        ],
      },
      false,
    );
    expect(payload.ok && JSON.parse(payload.value.payload)).toEqual({
      model: 'claude',
      max_tokens: 4096,
      system: 's',
      messages: [{ role: 'user', content: 'hi' }],
    });
    const answer = JSON.parse(
      exchange!.answer(
        JSON.stringify({
          id: 'm',
          type: 'message',
          model: 'claude-x',
          content: [{ type: 'text', text: 'yo' }],
          stop_reason: 'end_turn',
          usage: { input_tokens: 1, output_tokens: 2 },
        }),
        'alias',
      ),
    );
    expect(answer).toMatchObject({
      object: 'chat.completion',
      model: 'alias',
      choices: [{ message: { content: 'yo' } }],
    });
    expect(exchangeFor('chat', 'openai')?.name).toBe('openai:chat');
    expect(exchangeFor('embeddings', 'anthropic')).toBeNull();
  });
});
