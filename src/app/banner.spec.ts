import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/app-config.js';
import { startingLine } from './banner.js';

describe('startingLine: the first line of a start', () => {
  it('embedded: where embedded Postgres starts', () => {
    const line = startingLine(loadConfig({ DATA_DIR: '/var/lib/floodgate' }));
    expect(line).toMatch(
      /^Floodgate \S+ starting in embedded mode: starting embedded Postgres \(PGlite\) in \/var\/lib\/floodgate\/pgdata…$/,
    );
    expect(startingLine(loadConfig({ DATA_DIR: ':memory:' }))).toContain(
      'embedded Postgres (PGlite) in memory',
    );
  });

  it('distributed: the Postgres and Redis it waits for, never their passwords', () => {
    const line = startingLine(
      loadConfig({
        DATABASE_URL: 'postgres://app:s3cret@db.internal:5432/floodgate',
        REDIS_URL: 'redis://:hunter2@cache.internal:6380/0',
      }),
    );
    expect(line).toContain('starting in distributed mode');
    expect(line).toContain(
      'connecting to Postgres at db.internal:5432/floodgate and Redis at cache.internal:6380/0',
    );
    expect(line).not.toMatch(/s3cret|hunter2|app:/);
  });
});
