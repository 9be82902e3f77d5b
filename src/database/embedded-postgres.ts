import { Logger } from '@nestjs/common';
import { PGlite } from '@electric-sql/pglite';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';

/**
 * Embedded mode's Postgres: PGlite in this process, served on a loopback socket so TypeORM talks to
 * it through the ordinary `pg` driver — the same SQL and migrations as production.
 */
export class EmbeddedPostgres {
  private readonly logger = new Logger('EmbeddedPostgres');
  private db: PGlite | undefined;
  private server: PGLiteSocketServer | undefined;
  host = '127.0.0.1';
  port = 0;

  constructor(
    private readonly dataDir: string,
    /** pg's pool must stay ≤ this, or extra connections are dropped ("Connection terminated"). */
    readonly maxConnections: number,
  ) {}

  get location(): string {
    return this.dataDir === ':memory:'
      ? 'in memory (nothing is kept)'
      : resolve(join(this.dataDir, 'pgdata'));
  }

  async start(): Promise<void> {
    const started = Date.now();
    if (this.dataDir === ':memory:') {
      this.db = await PGlite.create();
    } else {
      const dir = join(this.dataDir, 'pgdata');
      await mkdir(dir, { recursive: true });
      this.db = await PGlite.create(dir);
    }
    this.server = new PGLiteSocketServer({
      db: this.db,
      host: this.host,
      port: 0,
      maxConnections: this.maxConnections,
    });
    await this.server.start();
    const conn = this.server.getServerConn();
    this.port = Number(conn.slice(conn.lastIndexOf(':') + 1));
    this.logger.log(`embedded Postgres (PGlite) ready in ${Date.now() - started} ms, data ${this.location}`);
  }

  async stop(): Promise<void> {
    const server = this.server;
    const db = this.db;
    this.server = undefined;
    this.db = undefined;
    await server?.stop().catch(() => undefined);
    await db?.close().catch(() => undefined);
  }
}
