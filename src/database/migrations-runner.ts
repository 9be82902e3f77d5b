import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';

const LOCK_KEY = 'floodgate:migrations';

/**
 * Applies pending migrations under a Postgres advisory lock, so replicas starting together don't
 * race; each migration runs in its own transaction, so a crash leaves the schema at a known step.
 */
export async function runMigrationsLocked(
  dataSource: DataSource,
  logger = new Logger('Migrations'),
): Promise<string[]> {
  const runner = dataSource.createQueryRunner();
  await runner.connect();
  try {
    await runner.query('SELECT pg_advisory_lock(hashtext($1))', [LOCK_KEY]);
    try {
      const pending = await dataSource.showMigrations();
      if (!pending) return [];
      const started = Date.now();
      logger.log('applying pending database migrations…');
      const applied = await dataSource.runMigrations({ transaction: 'each' });
      for (const m of applied) logger.log(`applied migration ${m.name}`);
      logger.log(`${applied.length} migration(s) applied in ${Date.now() - started} ms`);
      return applied.map((m) => m.name);
    } finally {
      await runner.query('SELECT pg_advisory_unlock(hashtext($1))', [LOCK_KEY]);
    }
  } finally {
    await runner.release();
  }
}
