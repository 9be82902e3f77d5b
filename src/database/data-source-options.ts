import type { DataSourceOptions } from 'typeorm';
import { MIGRATIONS } from '../../migrations/index.js';
import type { AppConfig } from '../config/app-config.js';
import { QueryErrorLogger } from './query-error-logger.js';

/** The connection's application_name in embedded mode (one process owns the database). */
export const EMBEDDED_APPLICATION_NAME = 'floodgate-embedded';

export interface Endpoint {
  host: string;
  port: number;
}

/** The one place connection settings are made, for the app and for the migration CLI alike. */
export function dataSourceOptions(config: AppConfig, embedded?: Endpoint): DataSourceOptions {
  const connection = embedded
    ? {
        host: embedded.host,
        port: embedded.port,
        username: 'postgres',
        password: 'postgres',
        database: 'postgres',
      }
    : { url: config.database.url };
  return {
    type: 'postgres',
    ...connection,
    synchronize: false,
    migrationsRun: false,
    migrations: MIGRATIONS,
    migrationsTableName: 'migrations',
    // The schema comes from migrations/ and its uuid defaults use gen_random_uuid() (core since
    // Postgres 13), so no extension is needed: without this TypeORM tries CREATE EXTENSION "uuid-ossp"
    // at every start (a warning on PGlite and for a database user without CREATE privilege).
    installExtensions: false,
    logging: ['error', 'warn'],
    logger: new QueryErrorLogger(),
    extra: {
      // Embedded: one connection (see session-lock.ts for why); PGlite serves one query at a time anyway.
      max: embedded ? 1 : config.database.poolSize,
      connectionTimeoutMillis: 5000,
      idleTimeoutMillis: 30000,
      // Read back by session-lock.ts: embedded databases belong to one process.
      application_name: embedded ? EMBEDDED_APPLICATION_NAME : 'floodgate',
    },
  };
}
