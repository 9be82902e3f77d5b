import type { DataSource } from 'typeorm';
import { EMBEDDED_APPLICATION_NAME } from './data-source-options.js';

/**
 * Embedded mode talks to PGlite over ONE pooled connection: PGlite runs one query at a time anyway,
 * and pglite-socket mixes up extended-protocol messages of concurrent connections ("unnamed
 * prepared statement does not exist"). One process owns an embedded database, so cross-instance
 * locks are moot there — and a lock on a second connection would wait forever for the pool's only
 * one. Decided by the mode, never by the pool size (DATABASE_POOL_SIZE=1 on a shared Postgres
 * still needs the locks).
 */
export function isEmbedded(dataSource: DataSource): boolean {
  const extra = (dataSource.options as { extra?: { application_name?: string } }).extra;
  return extra?.application_name === EMBEDDED_APPLICATION_NAME;
}

/**
 * Runs `fn` while holding a Postgres session advisory lock named `name` (replicas starting together
 * take turns). The lock lives on its own connection; `fn` uses the pool as usual. In embedded mode
 * (a single connection, a single process) `fn` simply runs.
 */
export async function withSessionLock<T>(
  dataSource: DataSource,
  name: string,
  fn: () => Promise<T>,
): Promise<T> {
  if (isEmbedded(dataSource)) return fn();
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock(hashtext($1))', [name]);
    try {
      return await fn();
    } finally {
      await runner.query('SELECT pg_advisory_unlock(hashtext($1))', [name]);
    }
  } finally {
    await runner.release();
  }
}
