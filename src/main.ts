import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { bannerLines } from './app/banner.js';
import { createApp } from './app/create-app.js';
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

  const app = await createApp(config);
  const logger = new Logger('Floodgate');
  for (const w of warnings) logger.warn(w);
  installGracefulShutdown(app, config.shutdownTimeoutMs, logger);
  await app.listen({ port: config.http.port, host: config.http.host });

  const address = app.getHttpServer().address();
  const port = typeof address === 'object' && address ? address.port : config.http.port;
  const lines = bannerLines(
    config,
    app.get<DatabaseInfo>(DATABASE_INFO),
    { host: config.http.host, port },
    app.get(StartupNotes).drain(),
  );
  if (config.log.format === 'pretty') process.stdout.write(`\n${lines.join('\n')}\n\n`);
  else logger.log({ banner: lines }, 'floodgate started');
}

main().catch((err: unknown) => {
  process.stderr.write(`floodgate: failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
