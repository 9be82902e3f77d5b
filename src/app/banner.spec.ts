import { describe, expect, it } from 'vitest';
import { loadConfig } from '../config/app-config.js';
import { bannerLines, startingLine } from './banner.js';

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

describe('bannerLines: how admissions are decided', () => {
  const db = { kind: 'postgres', location: 'postgres://db.internal:5432/floodgate' } as unknown as Parameters<
    typeof bannerLines
  >[1];
  const at = { host: '0.0.0.0', port: 3000 };
  const distributed = {
    DATABASE_URL: 'postgres://db.internal:5432/floodgate',
    REDIS_URL: 'redis://cache:6379',
  };

  it('distributed: says local grants by default, exact with ADMISSION_GRANTS=off or a cluster', () => {
    const granted = bannerLines(loadConfig(distributed), db, at, []).join('\n');
    expect(granted).toContain('admission  local grants: blocks from Redis, spent locally');
    const exact = bannerLines(loadConfig({ ...distributed, ADMISSION_GRANTS: 'off' }), db, at, []).join('\n');
    expect(exact).toContain('admission  exact: one Redis decision per request (ADMISSION_GRANTS=off)');
    const cluster = bannerLines(
      loadConfig({ DATABASE_URL: distributed.DATABASE_URL, REDIS_CLUSTER_NODES: 'c1:7000,c2:7001' }),
      db,
      at,
      [],
    ).join('\n');
    expect(cluster).toContain(
      'admission  exact: one Redis decision per request (local grants need a single Redis)',
    );
  });

  it('embedded: no admission line (grants do not apply)', () => {
    const lines = bannerLines(loadConfig({ DATA_DIR: ':memory:', ADMISSION_GRANTS: 'on' }), db, at, []);
    expect(lines.join('\n')).not.toContain('admission ');
  });
});
