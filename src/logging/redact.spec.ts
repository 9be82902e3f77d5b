import { Writable } from 'node:stream';
import pino from 'pino';
import { describe, expect, it } from 'vitest';
import { REDACT_CENSOR, REDACT_PATHS } from './redact.js';

function logged(obj: Record<string, unknown>): string {
  let out = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      out += chunk.toString();
      done();
    },
  });
  pino({ redact: { paths: REDACT_PATHS, censor: REDACT_CENSOR } }, sink).info(obj, 'line');
  return out;
}

describe('pino redaction', () => {
  it('censors provider header values (names kept) wherever a provider, its body or a lease is logged', () => {
    const headers = { 'X-Portkey-Config': 'pk-SECRET-1' };
    const line = logged({
      provider: { name: 'p', headers },
      ctx: { provider: { headers } },
      lease: { headers },
      dto: { headers },
      body: { headers },
      req: { body: { headers } },
    });
    expect(line).not.toContain('pk-SECRET-1');
    expect(line).toContain('"X-Portkey-Config":"[redacted]"');
    expect(JSON.parse(line).provider.name).toBe('p');
  });
});
