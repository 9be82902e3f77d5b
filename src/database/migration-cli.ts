import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { DataSource } from 'typeorm';
import { packageInfo } from '../common/package-info.js';
import { ConfigError, loadConfig } from '../config/app-config.js';
import { resolveDevSecrets } from '../config/dev-secrets.js';
import { dataSourceOptions } from './data-source-options.js';
import { EmbeddedPostgres } from './embedded-postgres.js';
import { runMigrationsLocked } from './migrations-runner.js';

/**
 * `npm run migration:run | migration:revert | migration:generate -- <Name>`
 * Same configuration as the gateway (DATABASE_URL, or the embedded database under DATA_DIR).
 * `generate` diffs the entities of the whole application against the database and writes a new
 * migration file with up and down.
 */
async function main(): Promise<void> {
  const [command, name] = process.argv.slice(2);
  if (!['run', 'revert', 'show', 'generate'].includes(command ?? '')) {
    process.stderr.write('usage: migration-cli <run|revert|show|generate Name>\n');
    process.exit(2);
  }
  const secrets = await resolveDevSecrets(process.env);
  const config = loadConfig({ ...process.env, LOG_FORMAT: process.env.LOG_FORMAT ?? 'json' }, secrets);
  const logger = new Logger('Migrations');
  let embedded: EmbeddedPostgres | undefined;
  if (!config.database.url) {
    embedded = new EmbeddedPostgres(config.database.dataDir, 4);
    await embedded.start();
  }
  let dataSource: DataSource;
  if (command === 'generate') {
    // The full application knows every entity; boot it without listening to read them.
    const { NestFactory } = await import('@nestjs/core');
    const { AppModule } = await import('../app/app.module.js');
    const app = await NestFactory.createApplicationContext(
      AppModule.forRoot({ ...config, database: { ...config.database, migrationsRun: false } }),
      {
        logger: ['error'],
      },
    );
    dataSource = app.get(DataSource);
    const sql = await dataSource.driver.createSchemaBuilder().log();
    if (sql.upQueries.length === 0) {
      logger.log('entities and schema agree: nothing to generate');
    } else {
      const timestamp = Date.now();
      const className = `${(name ?? 'Migration').replace(/[^A-Za-z0-9]/g, '')}${timestamp}`;
      const esc = (q: string) => q.replace(/\\/g, '\\\\').replace(/`/g, '\\`');
      const file = join(packageInfo().root, 'migrations', `${timestamp}-${name ?? 'Migration'}.ts`);
      const body = [
        `import type { MigrationInterface, QueryRunner } from 'typeorm';`,
        ``,
        `export class ${className} implements MigrationInterface {`,
        `  name = '${className}';`,
        ``,
        `  async up(q: QueryRunner): Promise<void> {`,
        ...sql.upQueries.map((u) => `    await q.query(\`${esc(u.query)}\`);`),
        `  }`,
        ``,
        `  async down(q: QueryRunner): Promise<void> {`,
        ...sql.downQueries.reverse().map((d) => `    await q.query(\`${esc(d.query)}\`);`),
        `  }`,
        `}`,
        ``,
      ].join('\n');
      await writeFile(file, body);
      logger.log(`wrote ${file}: add ${className} to migrations/index.ts`);
    }
    await app.close();
    await embedded?.stop();
    return;
  }
  dataSource = await new DataSource(dataSourceOptions(config, embedded)).initialize();
  try {
    if (command === 'run') {
      const applied = await runMigrationsLocked(dataSource, logger);
      if (applied.length === 0) logger.log('database is up to date');
    } else if (command === 'show') {
      const pending = await dataSource.showMigrations();
      logger.log(pending ? 'there are pending migrations' : 'database is up to date');
    } else {
      await dataSource.undoLastMigration({ transaction: 'each' });
      logger.log('reverted the last migration');
    }
  } finally {
    await dataSource.destroy();
    await embedded?.stop();
  }
}

main().catch((err: unknown) => {
  if (err instanceof ConfigError) {
    for (const p of err.problems) process.stderr.write(`floodgate: configuration error: ${p}\n`);
    process.exit(2);
  }
  process.stderr.write(`migration failed: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
