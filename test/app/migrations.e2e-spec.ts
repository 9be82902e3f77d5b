import { DataSource } from 'typeorm';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { loadConfig } from '../../src/config/app-config.js';
import { dataSourceOptions } from '../../src/database/data-source-options.js';
import { runMigrationsLocked } from '../../src/database/migrations-runner.js';
import { MIGRATIONS } from '../../migrations/index.js';
import { createTestDatabase } from '../support/services.js';

describe('migrations', () => {
  let db: Awaited<ReturnType<typeof createTestDatabase>>;
  let ds: DataSource;
  beforeAll(async () => {
    db = await createTestDatabase();
    ds = await new DataSource(dataSourceOptions(loadConfig({ DATABASE_URL: db.url }))).initialize();
  });
  afterAll(async () => {
    await ds?.destroy();
    await db?.drop();
  });

  const tables = async () =>
    (
      (await ds.query(
        `SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_name <> 'migrations' ORDER BY 1`,
      )) as {
        table_name: string;
      }[]
    ).map((r) => r.table_name);

  it('apply every migration, revert every one (down works), and apply again', async () => {
    const applied = await runMigrationsLocked(ds);
    expect(applied).toHaveLength(MIGRATIONS.length);
    const created = await tables();
    expect(created).toContain('instances');
    expect(created).toContain('audit_log');
    for (let i = 0; i < MIGRATIONS.length; i++) await ds.undoLastMigration({ transaction: 'each' });
    expect(await tables()).toEqual([]);
    expect(await runMigrationsLocked(ds)).toHaveLength(MIGRATIONS.length);
    expect(await tables()).toEqual(created);
  });

  it('two runners at once apply each migration exactly once (advisory lock)', async () => {
    for (let i = 0; i < MIGRATIONS.length; i++) await ds.undoLastMigration({ transaction: 'each' });
    const other = await new DataSource(dataSourceOptions(loadConfig({ DATABASE_URL: db.url }))).initialize();
    try {
      const [a, b] = await Promise.all([runMigrationsLocked(ds), runMigrationsLocked(other)]);
      expect(a.length + b.length).toBe(MIGRATIONS.length);
    } finally {
      await other.destroy();
    }
  });
});
