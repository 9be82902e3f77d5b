import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  boolArray,
  dateArray,
  numberArray,
  textArray,
} from '../../src/relay/infrastructure/request-log.writer.js';
import { TEST_POSTGRES_URL } from '../support/services.js';

/**
 * The request-log batch sends each column as an array literal it builds itself (not pg's array
 * encoding): whatever a text column holds — quotes, backslashes, commas, braces, the word NULL,
 * an empty string, non-ASCII — comes back from Postgres as it went in, and null stays NULL.
 */
describe('request-log array literals round-trip through Postgres', () => {
  let db: pg.Client;
  beforeAll(async () => {
    db = new pg.Client({ connectionString: TEST_POSTGRES_URL });
    await db.connect();
  });
  afterAll(async () => {
    await db.end();
  });
  const back = async (literal: string, type: string): Promise<unknown[]> =>
    (await db.query(`SELECT unnest($1::${type}[])::text AS v`, [literal])).rows.map(
      (r: { v: unknown }) => r.v,
    );

  it('text: every character is data', async () => {
    const values = [
      'plain',
      'with "quotes"',
      'back\\slash \\" mixed',
      'a,b',
      '{braces}',
      'NULL',
      '',
      '  spaced  ',
      'ünï — 😀',
      'new\nline\ttab',
      null,
      "it's",
    ];
    expect(await back(textArray(values), 'varchar')).toEqual(values);
  });

  it('numbers and bigints beyond 2^53, booleans, nulls', async () => {
    expect(await back(numberArray([0, -5, 123456, null, 9007199254740993n]), 'bigint')).toEqual([
      '0',
      '-5',
      '123456',
      null,
      '9007199254740993',
    ]);
    expect(await back(boolArray([true, false, null]), 'boolean')).toEqual(['true', 'false', null]);
  });

  it('instants keep their millisecond, whatever the session time zone', async () => {
    await db.query(`SET TIME ZONE 'America/New_York'`);
    const at = [new Date('2026-12-06T08:00:00.123Z'), new Date(0)];
    const rows = (await db.query(`SELECT unnest($1::timestamptz[]) AS v`, [dateArray(at)])).rows as {
      v: Date;
    }[];
    expect(rows.map((r) => r.v.getTime())).toEqual(at.map((d) => d.getTime()));
  });

  it('an invalid Date is refused by Postgres (the batch isolates that row), not stored as something else', async () => {
    await expect(back(dateArray([new Date(Number.NaN)]), 'timestamptz')).rejects.toThrow();
  });
});
