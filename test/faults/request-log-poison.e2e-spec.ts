import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import { RequestLogWriter, type RequestLogEntry } from '../../src/relay/infrastructure/request-log.writer.js';
import { bearer, createUserWithKey, newApiKey } from '../support/auth.js';
import { addProvider, chat, pollUntil } from '../support/cluster.js';
import { FakeProvider } from '../support/fake-provider.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';

/**
 * One bad row never blocks the request log. Rows carrying what Postgres cannot store in text (NUL,
 * a lone surrogate, a string longer than its column) are made safe before storage; a row the
 * database still refuses (a data error) is isolated and dropped alone: the other rows of its batch
 * and every later batch are stored.
 */

function entry(requestId: string, over: Partial<RequestLogEntry> = {}): RequestLogEntry {
  return {
    createdAt: new Date(),
    requestId,
    apiKeyId: null,
    userId: null,
    providerId: null,
    providerKeyId: null,
    endpoint: 'chat/completions',
    model: 'gpt-4o-mini',
    priority: 'normal',
    status: 200,
    errorCode: null,
    promptTokens: 1,
    completionTokens: 1,
    queueMs: 0,
    upstreamMs: 1,
    overheadMs: 1,
    attempts: 1,
    stream: false,
    ...over,
  };
}

describe.each(MODES)('request log poison rows (%s)', (mode) => {
  let gw: TestGateway;
  let writer: RequestLogWriter;
  let db: DataSource;
  let fake: FakeProvider;
  const adminKey = newApiKey();

  beforeAll(async () => {
    fake = await FakeProvider.start();
    gw = await startGateway(mode, {
      ADMIN_BOOTSTRAP_KEY: adminKey,
      RATE_LIMIT_KEY_RPM: '100000',
      RATE_LIMIT_USER_RPM: '100000',
    });
    writer = gw.app.get(RequestLogWriter);
    db = gw.app.get(DataSource);
  });
  afterAll(async () => {
    await gw?.close();
    await fake?.close();
  });

  const stored = async (ids: string[]) =>
    new Map(
      (
        (await db.query('SELECT request_id, model, error_code FROM request_log WHERE request_id = ANY($1)', [
          ids,
        ])) as { request_id: string; model: string | null; error_code: string | null }[]
      ).map((r) => [r.request_id, r]),
    );

  it('unstorable strings in a batch: every row stored, made safe; later batches stored', async () => {
    const tag = randomUUID().slice(0, 8);
    const good = Array.from({ length: 20 }, (_, i) => `poison-good-${tag}-${i}`);
    const nul = `poison-nul-${tag}`;
    const lone = `poison-lone-${tag}`;
    const long = `poison-long-${tag}`;
    good.slice(0, 10).forEach((id) => writer.add(entry(id)));
    writer.add(entry(nul, { model: 'gpt\u0000-4o', errorCode: 'x\u0000y' }));
    writer.add(entry(lone, { model: `gpt-\ud800-4o` }));
    // 254 ASCII characters, then an emoji: slicing at 255 UTF-16 units would leave a lone surrogate
    writer.add(entry(long, { model: `${'m'.repeat(254)}😀${'n'.repeat(300)}` }));
    good.slice(10).forEach((id) => writer.add(entry(id)));
    await writer.flush();
    const rows = await stored([...good, nul, lone, long]);
    expect(
      good.filter((id) => !rows.has(id)),
      'good rows of the batch',
    ).toEqual([]);
    expect(rows.get(nul)?.model).toBe('gpt\ufffd-4o');
    expect(rows.get(nul)?.error_code).toBe('x\ufffdy');
    expect(rows.get(lone)?.model).toBe('gpt-\ufffd-4o');
    expect(Array.from(rows.get(long)?.model ?? '')).toHaveLength(255);
    expect(rows.get(long)?.model?.endsWith('m😀')).toBe(true);

    const later = Array.from({ length: 5 }, (_, i) => `poison-later-${tag}-${i}`);
    later.forEach((id) => writer.add(entry(id)));
    await writer.flush();
    const laterRows = await stored(later);
    expect(
      later.filter((id) => !laterRows.has(id)),
      'later batch',
    ).toEqual([]);
    expect(writer.pending).toBe(0);
  });

  it('a row the database refuses is dropped alone: the rest of its batch and later batches are stored', async () => {
    const tag = randomUUID().slice(0, 8);
    const good = Array.from({ length: 30 }, (_, i) => `refused-good-${tag}-${i}`);
    const bad = `refused-bad-${tag}`;
    good.slice(0, 17).forEach((id) => writer.add(entry(id)));
    // out of the integer column's range: Postgres refuses the whole statement (22003)
    writer.add(entry(bad, { promptTokens: 2 ** 40 }));
    good.slice(17).forEach((id) => writer.add(entry(id)));
    const droppedBefore = writer.droppedRows;
    await writer.flush();
    const rows = await stored([...good, bad]);
    expect(
      good.filter((id) => !rows.has(id)),
      'good rows of the batch',
    ).toEqual([]);
    expect(rows.has(bad)).toBe(false);
    expect(writer.droppedRows - droppedBefore).toBe(1);
    expect(writer.pending).toBe(0);

    const later = Array.from({ length: 5 }, (_, i) => `refused-later-${tag}-${i}`);
    later.forEach((id) => writer.add(entry(id)));
    await writer.flush();
    const laterRows = await stored(later);
    expect(
      later.filter((id) => !laterRows.has(id)),
      'later batch',
    ).toEqual([]);

    const metrics = await (await fetch(`${gw.url}/metrics`)).text();
    expect(metrics).toMatch(
      /floodgate_store_writes_dropped_total\{writer="request_log",reason="rejected"\} [1-9]/,
    );
  });

  it('a relayed request whose model holds a NUL does not stop later requests from being logged', async () => {
    await addProvider(gw, adminKey, fake, [{ key: 'sk-poison' }], { models: ['*'] });
    const client = await createUserWithKey(gw, adminKey, 'developer');
    const poison = await fetch(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: bearer(client.key),
      body: JSON.stringify({ model: 'gpt-4o-mini\u0000', messages: [{ role: 'user', content: 'x' }] }),
    });
    await poison.arrayBuffer();
    expect(poison.status).not.toBe(500);
    await writer.flush();
    const ids: string[] = [];
    for (let i = 0; i < 5; i++) {
      const a = await chat(gw.url, client.key, `after-poison-${i}`);
      expect(a.status).toBe(200);
      ids.push(a.requestId);
    }
    // a row is added once its response has ended: poll (flushing) until all are there
    const { value: missing } = await pollUntil(
      async () => {
        await writer.flush();
        const rows = await stored(ids);
        const absent = ids.filter((id) => !rows.has(id));
        return absent.length === 0 ? absent : false;
      },
      { timeoutMs: 5000, intervalMs: 100, what: 'the rows of the requests after the poisoned one' },
    ).catch(async () => {
      const rows = await stored(ids);
      return { value: ids.filter((id) => !rows.has(id)) };
    });
    expect(missing).toEqual([]);
  });
});
