import type { DataSource } from 'typeorm';
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/app-config.js';
import { dataSourceOptions } from './data-source-options.js';
import { isEmbedded } from './session-lock.js';

const asDataSource = (options: unknown) => ({ options }) as DataSource;

describe('isEmbedded', () => {
  it('is true only for the embedded database, whatever the pool size', () => {
    const embedded = dataSourceOptions(loadConfig({}), { host: '127.0.0.1', port: 5555 });
    expect(isEmbedded(asDataSource(embedded))).toBe(true);
    // A shared Postgres with a one-connection pool still takes the cross-instance locks.
    const shared = dataSourceOptions(
      loadConfig({ DATABASE_URL: 'postgres://u@h/db', DATABASE_POOL_SIZE: '1' }),
    );
    expect(isEmbedded(asDataSource(shared))).toBe(false);
  });
});
