import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { DataSource } from 'typeorm';
import type { Principal } from '../../src/common/principal.js';
import type { AttemptRecord } from '../../src/relay/domain/attempt.js';
import { RequestLogWriter } from '../../src/relay/infrastructure/request-log.writer.js';
import { AccountStage, type RequestRecord } from '../../src/relay/stages/account.stage.js';
import { MODES, startGateway, type TestGateway } from '../support/gateway.js';

/**
 * request_log.route_id and request_log.attempt_log (jsonb, snake_case keys) as AccountStage writes
 * them through the batched writer, in both modes (PGlite and Postgres); a string inside attempt_log
 * that jsonb could not take (NUL, lone surrogate) is made safe and never loses its batch.
 */

const principal: Principal = {
  userId: randomUUID(),
  email: null,
  role: 'developer',
  method: 'api_key',
  apiKeyId: randomUUID(),
  apiKey: null,
};

function record(requestId: string, over: Partial<RequestRecord> = {}): RequestRecord {
  return {
    endpoint: 'chat',
    requestId,
    principal,
    model: 'gpt-4o-mini',
    priority: 'normal',
    stream: false,
    provider: { id: randomUUID(), name: 'fake' },
    modelLabel: 'gpt-4o-mini',
    status: 200,
    errorCode: null,
    outcome: 'ok',
    promptTokens: 1,
    completionTokens: 1,
    queueMs: 0,
    upstreamMs: 3,
    overheadMs: 1,
    attempts: 1,
    keyId: null,
    ...over,
  };
}

interface Row {
  request_id: string;
  route_id: string | null;
  attempt_log: unknown;
}

describe.each(MODES)('request log route and attempts (%s)', (mode) => {
  let gw: TestGateway;
  let account: AccountStage;
  let writer: RequestLogWriter;
  let db: DataSource;

  beforeAll(async () => {
    gw = await startGateway(mode);
    account = gw.app.get(AccountStage);
    writer = gw.app.get(RequestLogWriter);
    db = gw.app.get(DataSource);
  });
  afterAll(async () => {
    await gw?.close();
  });

  const stored = async (ids: string[]) =>
    new Map(
      (
        (await db.query(
          'SELECT request_id, route_id, attempt_log FROM request_log WHERE request_id = ANY($1)',
          [ids],
        )) as Row[]
      ).map((r) => [r.request_id, r]),
    );

  it('stores the route and every attempt as a JSON array with snake_case keys; rows without them get NULL', async () => {
    const tag = randomUUID().slice(0, 8);
    const routeId = randomUUID();
    const [p1, p2, k2] = [randomUUID(), randomUUID(), randomUUID()];
    const attempts: AttemptRecord[] = [
      {
        attempt: 1,
        providerId: p1,
        model: 'gpt-4o',
        keyId: null,
        status: null,
        outcome: 'timeout',
        ms: 1500.4,
      },
      { attempt: 2, providerId: p2, model: 'claude "x" \\ y', keyId: k2, status: 200, outcome: 'ok', ms: 42 },
    ];
    account.account(record(`routed-${tag}`, { routeId, attemptLog: attempts, attempts: 2 }));
    account.account(record(`plain-${tag}`));
    await writer.flush();
    const rows = await stored([`routed-${tag}`, `plain-${tag}`]);
    expect(rows.get(`routed-${tag}`)?.route_id).toBe(routeId);
    expect(rows.get(`routed-${tag}`)?.attempt_log).toEqual([
      {
        attempt: 1,
        provider_id: p1,
        model: 'gpt-4o',
        key_id: null,
        status: null,
        outcome: 'timeout',
        ms: 1500,
      },
      {
        attempt: 2,
        provider_id: p2,
        model: 'claude "x" \\ y',
        key_id: k2,
        status: 200,
        outcome: 'ok',
        ms: 42,
      },
    ]);
    // jsonb, not text: Postgres can look inside it
    const [inside] = (await db.query(
      `SELECT jsonb_array_length(attempt_log) AS n, attempt_log->1->>'outcome' AS second FROM request_log WHERE request_id = $1`,
      [`routed-${tag}`],
    )) as { n: number; second: string }[];
    expect(Number(inside!.n)).toBe(2);
    expect(inside!.second).toBe('ok');
    expect(rows.get(`plain-${tag}`)?.route_id).toBeNull();
    expect(rows.get(`plain-${tag}`)?.attempt_log).toBeNull();
  });

  it('a NUL or a lone surrogate inside attempt_log is made safe: the whole batch and later ones are stored', async () => {
    const tag = randomUUID().slice(0, 8);
    const good = Array.from({ length: 10 }, (_, i) => `attempts-good-${tag}-${i}`);
    const poison = `attempts-poison-${tag}`;
    const attempt = (model: string, outcome = 'ok'): AttemptRecord => ({
      attempt: 1,
      providerId: randomUUID(),
      model,
      keyId: null,
      status: 200,
      outcome,
      ms: 5,
    });
    good.slice(0, 5).forEach((id) => account.account(record(id, { attemptLog: [attempt('m')] })));
    account.account(
      record(poison, {
        attemptLog: [attempt('gpt\u0000-4o', 'o\ud800k'), attempt(`x-\udc00-${'y'.repeat(400)}`)],
      }),
    );
    good.slice(5).forEach((id) => account.account(record(id, { attemptLog: [attempt('m')] })));
    const droppedBefore = writer.droppedRows;
    await writer.flush();
    const rows = await stored([...good, poison]);
    expect(
      good.filter((id) => !rows.has(id)),
      'good rows of the batch',
    ).toEqual([]);
    const log = rows.get(poison)?.attempt_log as { model: string; outcome: string }[];
    expect(log[0]!.model).toBe('gpt\ufffd-4o');
    expect(log[0]!.outcome).toBe('o\ufffdk');
    expect(log[1]!.model.startsWith('x-\ufffd-y')).toBe(true);
    expect(Array.from(log[1]!.model)).toHaveLength(255);
    expect(writer.droppedRows - droppedBefore).toBe(0);

    const later = `attempts-later-${tag}`;
    account.account(record(later, { attemptLog: [attempt('m')] }));
    await writer.flush();
    expect((await stored([later])).has(later)).toBe(true);
    expect(writer.pending).toBe(0);
  });
});
