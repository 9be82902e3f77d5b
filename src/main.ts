import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { pino } from 'pino';
import { DataSource } from 'typeorm';
import { bannerLines, startingLine } from './app/banner.js';
import { createApp } from './app/create-app.js';
import { IdleCollector } from './app/idle-collector.js';
import { inFlightOf } from './app/in-flight.js';
import { installGracefulShutdown } from './app/shutdown.js';
import { StartupNotes } from './common/startup-notes.js';
import { ConfigError, loadConfig, type AppConfig } from './config/app-config.js';
import { resolveDevSecrets } from './config/dev-secrets.js';
import { DATABASE_INFO, type DatabaseInfo } from './database/database.module.js';

async function main(): Promise<void> {
  let config: AppConfig;
  let warnings: string[];
  try {
    const secrets = await resolveDevSecrets(process.env);
    warnings = secrets.warnings;
    config = loadConfig(process.env, secrets);
  } catch (err) {
    if (err instanceof ConfigError) {
      for (const problem of err.problems)
        process.stderr.write(`floodgate: configuration error: ${problem}\n`);
      process.exit(2);
    }
    throw err;
  }

  // Said at once: the rest of the start-up (embedded Postgres, migrations, Nest) takes seconds and
  // its log lines are held until it is done.
  announceStart(config);
  let app: Awaited<ReturnType<typeof createApp>>;
  try {
    app = await createApp(config);
  } catch (err) {
    // Configuration only the database can check (ENCRYPTION_KEYS material shared by replicas).
    if (err instanceof ConfigError) {
      for (const problem of err.problems)
        process.stderr.write(`floodgate: configuration error: ${problem}\n`);
      process.exit(2);
    }
    throw err;
  }
  const logger = new Logger('Floodgate');
  for (const w of warnings) logger.warn(w);
  installGracefulShutdown(app, config.shutdownTimeoutMs, logger);
  await app.listen({ port: config.http.port, host: config.http.host });
  // A burst's garbage given back once the process is quiet (src/app/idle-collector.ts).
  const requests = inFlightOf(app.getHttpServer());
  if (requests) new IdleCollector(requests, config.memoryIdleGcMs).start();

  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : config.http.port;
  const pretty = config.log.format === 'pretty';
  const lines = bannerLines(
    config,
    app.get<DatabaseInfo>(DATABASE_INFO),
    { host: config.http.host, port },
    app.get(StartupNotes).drain(),
    { quickStart: pretty && (await noProviderYet(app.get(DataSource))) },
  );
  // Pretty lines are written synchronously (src/logging/logging.module.ts): the few start-up lines
  // (embedded Postgres ready, migrations applied, warnings) are out, and the banner ends the output.
  if (pretty) process.stdout.write(`\n${lines.join('\n')}\n\n`);
  else logger.log({ banner: lines }, 'floodgate started');
}

/** The first line of a start, before anything is initialised (plain in pretty mode, JSON otherwise). */
function announceStart(config: AppConfig): void {
  const line = startingLine(config);
  if (config.log.format === 'pretty') process.stdout.write(`${line}\n`);
  else pino({ level: config.log.level }).child({ context: 'Floodgate' }).info(line);
}

/** A fresh install (no provider yet) ends its banner with the copy-paste quick start. */
async function noProviderYet(dataSource: DataSource): Promise<boolean> {
  try {
    const rows = (await dataSource.query('SELECT EXISTS (SELECT 1 FROM providers) AS found')) as {
      found: boolean;
    }[];
    return rows[0]?.found === false;
  } catch {
    return false;
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`floodgate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
