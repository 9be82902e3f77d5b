import { describe, expect, it } from 'vitest';
import { rollupOf, type RequestLogEntry } from './request-log.writer.js';

const P = '00000000-0000-4000-8000-000000000001';
const K = '00000000-0000-4000-8000-0000000000aa';

function entry(over: Partial<RequestLogEntry>): RequestLogEntry {
  return {
    createdAt: new Date('2026-12-06T10:15:00Z'),
    requestId: 'r',
    apiKeyId: K,
    userId: null,
    providerId: P,
    providerKeyId: null,
    endpoint: 'chat/completions',
    model: 'alias',
    priority: 'normal',
    status: 200,
    errorCode: null,
    promptTokens: 10,
    completionTokens: 5,
    queueMs: 0,
    upstreamMs: 1,
    overheadMs: 1,
    attempts: 1,
    stream: false,
    costMicroUsd: 7,
    ...over,
  };
}

describe('rollupOf (the spend rollup rows of one request-log batch)', () => {
  it('sums per UTC hour × key × user × team × provider × served model; skips rows without a provider', () => {
    const rows = rollupOf([
      entry({}),
      entry({ createdAt: new Date('2026-12-06T10:59:59.999Z'), costMicroUsd: null }),
      entry({ createdAt: new Date('2026-12-06T11:00:00Z') }),
      entry({ servedModel: 'gpt-4o-mini', costMicroUsd: 3 }),
      entry({ servedModel: 'gpt-4o-mini', teamId: P, promptTokens: Number.NaN }),
      entry({ providerId: null }),
    ]);
    const view = rows.map((r) => [
      r.hour.toISOString(),
      r.model,
      r.teamId,
      r.requests,
      r.promptTokens,
      r.completionTokens,
      r.costMicroUsd,
    ]);
    expect(view).toEqual([
      ['2026-12-06T10:00:00.000Z', 'alias', null, 2, 20n, 10n, 7n],
      ['2026-12-06T11:00:00.000Z', 'alias', null, 1, 10n, 5n, 7n],
      ['2026-12-06T10:00:00.000Z', 'gpt-4o-mini', null, 1, 10n, 5n, 3n],
      ['2026-12-06T10:00:00.000Z', 'gpt-4o-mini', P, 1, 0n, 5n, 7n],
    ]);
  });

  it('a null model and the text "null" stay apart', () => {
    expect(rollupOf([entry({ model: null }), entry({ model: 'null' })])).toHaveLength(2);
  });
});
