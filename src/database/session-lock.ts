import type { DataSource } from 'typeorm';

/**
 * Embedded mode talks to PGlite over ONE pooled connection: PGlite runs one query at a time anyway,
 * and pglite-socket mixes up extended-protocol messages of concurrent connections ("unnamed
 * prepared statement does not exist"). One process owns an embedded database, so cross-instance
 * locks are moot there.
 */
export function isSingleConnection(dataSource: DataSource): boolean {
  const extra = (dataSource.options as { extra?: { max?: number } }).extra;
  return extra?.max === 1;
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
  if (isSingleConnection(dataSource)) return fn();
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
