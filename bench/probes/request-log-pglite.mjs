// Probe (not part of `npm run bench`): what the request log's batch write costs on embedded
// Postgres (PGlite in its worker thread), per row, without the rest of the gateway. Starts the
// embedded server of a build, migrates it, optionally preloads --preload rows, then writes --batches
// batches of --rows rows with the build's own RequestLogWriter.insert (the relay's SQL and
// parameter encoding) and prints the process CPU (all threads; /proc utime+stime) and wall time per
// row. `--sql 'DROP INDEX …'` runs statements after migrating (index variants of one build).
//   npm run build && node bench/probes/request-log-pglite.mjs [--entry dist] [--rows 500]
//        [--batches 40] [--preload 200000] [--sql '…;…'] [--attempt-log] [--explain]
// --explain prints EXPLAIN ANALYZE of the request browser's page queries (src/requests) afterwards.
import { performance } from 'node:perf_hooks';
import { randomUUID } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { cpuMicros } from '../lib/procs.mjs';

/** CPU µs of this process's main thread (its task id is the pid). */
const mainMicros = () => cpuMicros(`${process.pid}/task/${process.pid}`);

const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const root = pathToFileURL(resolve(arg('entry', 'dist')) + '/').href;
const rowsPerBatch = Number(arg('rows', 500)), batches = Number(arg('batches', 40)), preload = Number(arg('preload', 0));
const { EmbeddedPostgres } = await import(`${root}src/database/embedded-postgres.js`);
const { MIGRATIONS } = await import(`${root}migrations/index.js`);
const { RequestLogWriter } = await import(`${root}src/relay/infrastructure/request-log.writer.js`);
const { DataSource } = await import('typeorm');

const pg = new EmbeddedPostgres(':memory:', 2);
await pg.start();
const ds = new DataSource({ type: 'postgres', host: pg.host, port: pg.port, username: 'postgres', password: 'postgres',
  database: 'postgres', migrations: MIGRATIONS, installExtensions: false, extra: { max: 1 } });
await ds.initialize();
await ds.runMigrations({ transaction: 'each' });
for (const s of (arg('sql', '') || '').split(';').map((x) => x.trim()).filter(Boolean)) await ds.query(s);

const metrics = { writeBufferDropped: { labels: () => ({ inc() {} }) }, writeBufferPending: { labels: () => ({ set() {} }) } };
const writer = new RequestLogWriter({ manager: ds.manager }, { database: { writeBufferMaxEntries: 1e6 } }, metrics);
const keys = Array.from({ length: 4 }, () => randomUUID()), users = Array.from({ length: 4 }, () => randomUUID());
const provider = randomUUID(), pkey = randomUUID();
let t = Date.now() - 3_600_000;
const row = (i) => ({
  createdAt: new Date(t += 1), requestId: `req-${randomUUID()}`, apiKeyId: keys[i % 4], userId: users[i % 4],
  providerId: provider, providerKeyId: pkey, endpoint: 'chat', model: 'gpt-4o-mini', priority: 'normal',
  status: i % 50 === 0 ? 429 : 200, errorCode: null, promptTokens: 12, completionTokens: 9, queueMs: 0, upstreamMs: 1,
  overheadMs: 0, attempts: 1, stream: false, routeId: null,
  // null as in the bench (a plain request's single attempt is not stored); --attempt-log: one attempt
  attemptLog: !argv.includes('--attempt-log') ? null : [{ attempt: 1, provider_id: provider, model: 'gpt-4o-mini', key_id: pkey, status: 200, outcome: 'ok', ms: 1 }],
  costMicroUsd: 7, servedModel: null, teamId: null, bodies: null,
});
const batch = () => Array.from({ length: rowsPerBatch }, (_, i) => row(i));
for (let n = 0; n < preload; n += rowsPerBatch) await writer.insert(batch());
if (preload) await ds.query('ANALYZE request_log');
for (let i = 0; i < 3; i++) await writer.insert(batch());
const walls = [];
const c0 = cpuMicros(process.pid), m0 = mainMicros();
for (let i = 0; i < batches; i++) {
  const b = batch(); const w0 = performance.now();
  await writer.insert(b);
  walls.push(performance.now() - w0);
}
const cpu = cpuMicros(process.pid) - c0, main = mainMicros() - m0;
walls.sort((a, b) => a - b);
const total = batches * rowsPerBatch;
console.log(`rows/batch ${rowsPerBatch}, batches ${batches}, preload ${preload}: CPU ${(cpu / total).toFixed(1)} µs/row (main thread ${(main / total).toFixed(1)}, others ${((cpu - main) / total).toFixed(1)}), wall ${(walls.reduce((a, b) => a + b, 0) * 1000 / total).toFixed(1)} µs/row, batch wall median ${walls[batches >> 1].toFixed(1)} ms, max ${walls[batches - 1].toFixed(1)} ms`);

if (argv.includes('--explain')) {
  // the repository's literal guard for the partial status index (migration RequestLogPartialIndexes)
  const guard = (await ds.query(`SELECT 1 FROM pg_indexes WHERE indexname = 'IDX_request_log_status_created_at' AND indexdef LIKE '%WHERE%'`)).length > 0;
  const [{ k, u, ts }] = await ds.query(`SELECT api_key_id AS k, user_id AS u, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts FROM request_log ORDER BY created_at DESC LIMIT 1 OFFSET 5000`);
  const page = (where, params) => `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) SELECT r.id FROM request_log r LEFT JOIN providers p ON p.id = r.provider_id ${where ? `WHERE ${where}` : ''} ORDER BY r.created_at DESC, r.id DESC LIMIT 51`;
  const cases = [
    ['newest', '', []],
    ['key_id', 'r.api_key_id = $1', [k]],
    ['user_id', 'r.user_id = $1', [u]],
    ['team_id (none match)', 'r.team_id = $1', [randomUUID()]],
    ['user_id (none match)', 'r.user_id = $1', [randomUUID()]],
    ['model', 'r.model = $1', ['gpt-4o-mini']],
    ['model (none match)', 'r.model = $1', ['nope']],
    ['status 429', `r.status = $1${guard ? ' AND r.status <> 200' : ''}`, [429]],
    ['status 200', 'r.status = $1', [200]],
    ['status 2xx', 'r.status >= $1 AND r.status <= $2', [200, 299]],
    ['status 5xx (none)', `r.status >= $1 AND r.status <= $2${guard ? ' AND r.status <> 200' : ''}`, [500, 599]],
    ['endpoint', 'r.endpoint = $1', ['chat']],
    ['cursor + user_id', `r.user_id = $1 AND (r.created_at, r.id) < ($2::timestamptz, '00000000-0000-0000-0000-000000000000'::uuid)`, [u, ts]],
    ['time range + model (none)', `r.model = $1 AND r.created_at >= now() - interval '30 minutes'`, ['nope']],
  ];
  for (const [name, where, params] of cases) {
    const plan = (await ds.query(page(where, params), params)).map((r) => r['QUERY PLAN']);
    const time = plan.find((l) => l.startsWith('Execution Time'));
    console.log(`\n-- ${name}: ${time}\n${plan.filter((l) => !/^(Planning|Execution)/.test(l)).join('\n')}`);
  }
}
await ds.destroy();
await pg.stop();
process.exit(0);
