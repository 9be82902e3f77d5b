import { Inject, Injectable, Module, OnApplicationShutdown } from '@nestjs/common';
import { ModuleRef } from '@nestjs/core';
import { TypeOrmModule } from '@nestjs/typeorm';
import { DataSource } from 'typeorm';
import type { AppConfig } from '../config/app-config.js';
import { redactUrl } from '../config/app-config.js';
import { APP_CONFIG } from '../config/config.module.js';
import { dataSourceOptions } from './data-source-options.js';
import { EmbeddedPostgres } from './embedded-postgres.js';
import { InstanceRegistry } from './instance-registry.js';
import { runMigrationsLocked } from './migrations-runner.js';

/** What the banner and health checks say about the database. */
export interface DatabaseInfo {
  kind: 'embedded' | 'postgres';
  location: string;
}
export const DATABASE_INFO = Symbol('DATABASE_INFO');
const EMBEDDED_POSTGRES = Symbol('EMBEDDED_POSTGRES');

@Injectable()
class EmbeddedPostgresLifecycle implements OnApplicationShutdown {
  constructor(
    @Inject(EMBEDDED_POSTGRES) private readonly embedded: EmbeddedPostgres | null,
    private readonly moduleRef: ModuleRef,
  ) {}

  async onApplicationShutdown(): Promise<void> {
    if (!this.embedded) return;
    // The pool must close before the PGlite socket server it talks to.
    const dataSource = this.moduleRef.get(DataSource, { strict: false });
    if (dataSource?.isInitialized) await dataSource.destroy();
    await this.embedded.stop();
  }
}

@Module({
  providers: [
    {
      provide: EMBEDDED_POSTGRES,
      inject: [APP_CONFIG],
      useFactory: async (config: AppConfig): Promise<EmbeddedPostgres | null> => {
        if (config.database.url) return null;
        // One socket connection is kept spare for the migration lock and health pings.
        const embedded = new EmbeddedPostgres(config.database.dataDir, config.database.poolSize + 2);
        await embedded.start();
        return embedded;
      },
    },
    {
      provide: DATABASE_INFO,
      inject: [APP_CONFIG, EMBEDDED_POSTGRES],
      useFactory: (config: AppConfig, embedded: EmbeddedPostgres | null): DatabaseInfo =>
        embedded
          ? { kind: 'embedded', location: embedded.location }
          : { kind: 'postgres', location: redactUrl(config.database.url ?? '') },
    },
    EmbeddedPostgresLifecycle,
  ],
  exports: [EMBEDDED_POSTGRES, DATABASE_INFO],
})
class EmbeddedPostgresModule {}

@Module({
  imports: [
    EmbeddedPostgresModule,
    TypeOrmModule.forRootAsync({
      imports: [EmbeddedPostgresModule],
      inject: [APP_CONFIG, EMBEDDED_POSTGRES],
      useFactory: (config: AppConfig, embedded: EmbeddedPostgres | null) => ({
        ...dataSourceOptions(config, embedded ?? undefined),
        autoLoadEntities: true,
        // Keep trying briefly at start (Postgres may come up after us in compose / k8s).
        retryAttempts: 5,
        retryDelay: 1000,
        manualInitialization: false,
      }),
      dataSourceFactory: async (options) => {
        const dataSource = await new DataSource(options!).initialize();
        return dataSource;
      },
    }),
  ],
  providers: [
    {
      provide: 'MIGRATIONS_AT_START',
      inject: [APP_CONFIG, DataSource],
      useFactory: async (config: AppConfig, dataSource: DataSource) => {
        if (config.database.migrationsRun) await runMigrationsLocked(dataSource);
        return true;
      },
    },
    InstanceRegistry,
  ],
  exports: [EmbeddedPostgresModule, InstanceRegistry],
})
export class DatabaseModule {}
