import { Logger as NestLogger } from '@nestjs/common';
import type { Logger as TypeOrmLogger } from 'typeorm';

/**
 * TypeORM's own logger prints every failed statement with all its parameters to the console,
 * outside pino (no JSON, no redaction), once per statement: during a Postgres outage that is
 * thousands of lines carrying row values. The callers already see and handle each error; this
 * keeps one warning per 10 s through the application's logger, with the statement's first words
 * and the error, never its parameters.
 */
export class QueryErrorLogger implements TypeOrmLogger {
  private readonly logger = new NestLogger('Database');
  private lastWarn = 0;
  private suppressed = 0;

  constructor(private readonly intervalMs = 10_000) {}

  // The parameters are deliberately never read.
  logQueryError(error: string | Error, query: string, _parameters?: unknown): void {
    const now = Date.now();
    if (now - this.lastWarn < this.intervalMs) {
      this.suppressed++;
      return;
    }
    const message = error instanceof Error ? error.message : String(error);
    const statement = query.replace(/\s+/g, ' ').trim().slice(0, 80);
    const more =
      this.suppressed > 0 ? ` (${this.suppressed} more failed statement(s) since the last report)` : '';
    this.lastWarn = now;
    this.suppressed = 0;
    this.logger.warn(`query failed: ${message} — ${statement}…${more}`);
  }

  logQuery(): void {}
  logQuerySlow(): void {}
  logSchemaBuild(): void {}
  logMigration(): void {}

  log(level: 'log' | 'info' | 'warn', message: unknown): void {
    if (level === 'warn') this.logger.warn(String(message));
  }
}
