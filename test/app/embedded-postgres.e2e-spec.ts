import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pg from 'pg';
import { afterAll, describe, expect, it } from 'vitest';
import { EMBEDDED_PG_SETTINGS, EmbeddedPostgres } from '../../src/database/embedded-postgres.js';

// Embedded mode's memory: PGlite keeps every byte of shared_buffers resident and initialising a
// cluster in-process left a second PGlite, the initdb module and a tarball behind (~0.5 GB).

const dirs: string[] = [];
afterAll(() => {
  for (const dir of dirs) rmSync(dir, { recursive: true, force: true });
});

async function query(db: EmbeddedPostgres, sql: string): Promise<Record<string, unknown>[]> {
  const client = new pg.Client({
    host: db.host,
    port: db.port,
    user: 'postgres',
    password: 'postgres',
    database: 'postgres',
  });
  await client.connect();
  try {
    return (await client.query(sql)).rows as Record<string, unknown>[];
  } finally {
    await client.end();
  }
}

describe('embedded Postgres', () => {
  it("leaves glibc's mmap threshold low: PGlite's 9 MB module and 6 MB bundle never go through malloc", () => {
    // glibc raises its mmap threshold to the size of the largest mmap'd block freed (up to 32 MB)
    // and its arenas' trim threshold to twice that. PGlite's own fs.readFile of pglite.wasm took it
    // to 9 MB for good: no arena gave back less than 18 MB free at its top, and the server
    // thread's stayed ~17 MB larger after every burst. A 3 MB block must still get its own mapping.
    // In a fresh process: the threshold is process-wide, and a test worker shared with other files
    // (servers started and stopped, large buffers freed) may have raised it already.
    // Up to five fresh processes, until one maps its block: other allocations in a process (the
    // server thread's, the pg client's) sometimes raise the threshold too (2 of 5 runs on a loaded
    // machine). With PGlite's own readFile of pglite.wasm (the bug) it is raised in every process.
    let mapped = 0;
    for (let run = 0; run < 5 && mapped === 0; run++) {
      const child = spawnSync(process.execPath, ['test/fixtures/mmap-threshold-child.mjs'], {
        encoding: 'utf8',
        timeout: 60_000,
      });
      expect(child.status, child.stderr).toBe(0);
      mapped = (JSON.parse(child.stdout.trim().split('\n').pop()!) as { mapped: number }).mapped;
    }
    expect(mapped, 'a new anonymous mapping for the 3 MB block').toBeGreaterThan(0);
  }, 180_000);

  // Nothing else has allocated WebAssembly memory in this process yet (the test above ran in a
  // child process).
  it('initialises a fresh data directory outside this process: no second instance left in its memory', async () => {
    const dataDir = mkdtempSync(join(tmpdir(), 'floodgate-embedded-test-'));
    dirs.push(dataDir);
    const db = new EmbeddedPostgres(dataDir, 3);
    await db.start();
    try {
      expect(existsSync(join(dataDir, 'pgdata', 'PG_VERSION'))).toBe(true);
      // One instance's WebAssembly memory is 128 MiB; in-process initdb left ~660 MB here. The
      // server itself runs in a worker thread: none of its memory is in this isolate either.
      expect(process.memoryUsage().external / 1e6).toBeLessThan(100);
    } finally {
      await db.stop();
    }
  });

  it('runs with the small memory settings', async () => {
    const db = new EmbeddedPostgres(':memory:', 3);
    await db.start();
    try {
      for (const [name, value] of Object.entries(EMBEDDED_PG_SETTINGS)) {
        const [row] = await query(db, `SHOW ${name}`);
        expect(row?.[name], name).toBe(value);
      }
    } finally {
      await db.stop();
    }
  });

  it("runs Postgres off the gateway's event loop: a long query does not block it", async () => {
    const db = new EmbeddedPostgres(':memory:', 3);
    await db.start();
    try {
      let longestGap = 0;
      let last = performance.now();
      const ticker = setInterval(() => {
        const now = performance.now();
        longestGap = Math.max(longestGap, now - last);
        last = now;
      }, 10);
      const [row] = await query(db, 'SELECT 1 AS slept FROM pg_sleep(2)');
      clearInterval(ticker);
      expect(row).toEqual({ slept: 1 });
      // In-process, the 2 s sleep (WebAssembly running to completion) held the loop for all of it.
      expect(longestGap).toBeLessThan(1500);
    } finally {
      await db.stop();
    }
  });

  it(':memory: leaves nothing behind; a data directory keeps its rows across restarts', async () => {
    // A killed gateway's :memory: directory (no exit handler ran) goes at the next start.
    const deadPid = spawnSync(process.execPath, ['-e', '']).pid;
    const orphan = join(tmpdir(), `floodgate-memory-${deadPid}-test`);
    mkdirSync(join(orphan, 'pgdata'), { recursive: true });
    const throwaway = new EmbeddedPostgres(':memory:', 3);
    await throwaway.start();
    const dir = throwaway.directory!;
    expect(existsSync(join(dir, 'PG_VERSION'))).toBe(true);
    expect(existsSync(orphan)).toBe(false);
    await throwaway.stop();
    expect(existsSync(dir)).toBe(false);

    const dataDir = mkdtempSync(join(tmpdir(), 'floodgate-embedded-test-'));
    dirs.push(dataDir);
    const first = new EmbeddedPostgres(dataDir, 3);
    await first.start();
    await query(first, `CREATE TABLE kept (v text); INSERT INTO kept VALUES ('still here')`);
    await first.stop();
    const second = new EmbeddedPostgres(dataDir, 3);
    await second.start();
    try {
      expect(await query(second, 'SELECT v FROM kept')).toEqual([{ v: 'still here' }]);
    } finally {
      await second.stop();
    }
  });
});
