import type { AppConfig } from '../config/app-config.js';
import type { DatabaseInfo } from '../database/database.module.js';
import { packageInfo } from '../common/package-info.js';

export function bannerLines(
  config: AppConfig,
  database: DatabaseInfo,
  address: { host: string; port: number },
  notes: { title: string; lines: string[] }[],
): string[] {
  const host = address.host === '0.0.0.0' || address.host === '::' ? 'localhost' : address.host;
  const base = `http://${host.includes(':') ? `[${host}]` : host}:${address.port}`;
  const state =
    config.mode === 'distributed' ? 'Redis (shared by every instance)' : 'in-process (one instance)';
  const lines = [
    `Floodgate ${packageInfo().version} is up (${config.env})`,
    `  mode       ${config.mode}: state ${state}`,
    `  database   ${database.kind === 'embedded' ? 'embedded PGlite' : 'Postgres'}, ${database.location}`,
    `  API        ${base}/v1  (OpenAI-compatible)`,
    `  docs       ${base}/docs  (OpenAPI JSON: ${base}/docs-json)`,
    `  health     ${base}/health/ready`,
  ];
  for (const note of notes) {
    lines.push('', note.title, ...note.lines.map((l) => `  ${l}`));
  }
  return lines;
}
