import { Logger } from '@nestjs/common';
import type { DataSource } from 'typeorm';
import { withSessionLock } from './session-lock.js';

const LOCK_KEY = 'floodgate:migrations';

/**
 * Applies pending migrations under a Postgres advisory lock, so replicas starting together don't
 * race; each migration runs in its own transaction, so a crash leaves the schema at a known step.
 */
export async function runMigrationsLocked(
  dataSource: DataSource,
  logger = new Logger('Migrations'),
): Promise<string[]> {
  return withSessionLock(dataSource, LOCK_KEY, async () => {
    const pending = await dataSource.showMigrations();
    if (!pending) return [];
    const started = Date.now();
    // One line at the default level (the list at debug): a first start applies every migration.
    logger.debug('applying pending database migrations…');
    const applied = await dataSource.runMigrations({ transaction: 'each' });
    for (const m of applied) logger.debug(`applied migration ${m.name}`);
    const last = applied[applied.length - 1]?.name;
    logger.log(
      `${applied.length} migration(s) applied in ${Date.now() - started} ms${last ? ` (schema now at ${last})` : ''}`,
    );
    return applied.map((m) => m.name);
  });
}
