// Probe (not part of `npm run bench`): two ways of writing the request-log batch into embedded
// Postgres (PGlite in its worker thread), A/B in one process: two embedded servers of the build
// (--entry), each migrated; --settings-b '{"name":"value"}' adds Postgres settings to one,
// --ddl-b 'DROP INDEX …; CREATE INDEX …' changes its schema, --insert-a/--insert-b pick how the batch
// is sent (below). Batches alternate A, B, B, A, … and each batch's CPU is read per thread from
// /proc/…/schedstat (ns): "pg" = the threads that side's server started (its PGlite worker), "main"
// = the encoding in this thread. Prints medians per row and the B/A ratio of each pair's pg CPU.
//   npm run build && node bench/probes/request-log-sql-ab.mjs [--entry dist | --entry-a dist-before --entry-b dist] [--rows 500] [--rows-b …] [--pairs 40]
//        [--settings-b '{"full_page_writes":"off"}'] [--ddl-b 'DROP INDEX …; CREATE INDEX …'] [--insert-a unnest] [--insert-b literal] [--ids-b v7]
// insert variants: `writer` (the build's RequestLogWriter.insert, as the relay writes), `unnest`
// (the writer before 2026-12-06: pg's array parameters, SELECT * FROM unnest(…), in a transaction),
// `projectset` (SELECT unnest(…), … instead), `literal` (array literals built here: no pg
// prepareValue per element), `no-attempt-log`. --ids-X: the row ids random (v4) or time-ordered
// (v7; the `writer` variant makes its own). Rows are shaped like the bench's (one key, no team,
// status 200 but every 50th 429, no attempt log; --attempt-log adds one).
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

const argv = process.argv.slice(2);
const arg = (n, d) => { const i = argv.indexOf(`--${n}`); return i === -1 ? d : argv[i + 1]; };
const root = pathToFileURL(resolve(arg('entry', 'dist')) + '/').href;
const rowsPerBatch = Number(arg('rows', 500)), pairs = Number(arg('pairs', 40));
const { EmbeddedPostgres, EMBEDDED_PG_SETTINGS } = await import(`${root}src/database/embedded-postgres.js`);
const { DataSource } = await import('typeorm');

const tids = () => new Set(readdirSync(`/proc/${process.pid}/task`));
const stmts = (s) => (s || '').split(';').map((x) => x.trim()).filter(Boolean);
const sides = {};
for (const t of ['a', 'b']) {
  // Each side its own embedded server (its own worker thread, told apart by the threads it started).
  const settings = JSON.parse(arg(`settings-${t}`, '{}'));
  const saved = { ...EMBEDDED_PG_SETTINGS };
  Object.assign(EMBEDDED_PG_SETTINGS, settings);
  const built = pathToFileURL(resolve(arg(`entry-${t}`, arg('entry', 'dist'))) + '/').href;
  const { RequestLogWriter } = await import(`${built}src/relay/infrastructure/request-log.writer.js`);
  const before = tids();
  const pg = new EmbeddedPostgres(':memory:', 2);
  await pg.start();
  for (const k of Object.keys(settings)) delete EMBEDDED_PG_SETTINGS[k];
  Object.assign(EMBEDDED_PG_SETTINGS, saved);
  const threads = [...tids()].filter((x) => !before.has(x));
  const { MIGRATIONS } = await import(`${built}migrations/index.js`);
  const ds = new DataSource({ type: 'postgres', host: pg.host, port: pg.port, username: 'postgres', password: 'postgres',
    database: 'postgres', migrations: MIGRATIONS, installExtensions: false, extra: { max: 1 } });
  await ds.initialize();
  await ds.runMigrations({ transaction: 'each' });
  for (const s of stmts(arg(`ddl-${t}`, ''))) await ds.query(s);
  const idx = await ds.query(`SELECT indexdef FROM pg_indexes WHERE tablename = 'request_log' ORDER BY indexname`);
  const metrics = { storeWritesDropped: { labels: () => ({ inc() {} }) }, storeWriteBuffer: { labels: () => ({ set() {} }) } };
  const writer = new RequestLogWriter({ manager: ds.manager }, { database: { writeBufferMaxEntries: 1e6 } }, metrics);
  console.log(`${t}: ${built.split('/').slice(-2, -1)[0]} ${JSON.stringify(settings)} ${idx.map((r) => r.indexdef.replace(/^CREATE (UNIQUE )?INDEX \S+ ON public\.\S+ USING btree /, '')).join(' | ')}`);
  sides[t.toUpperCase()] = { writer, rows: Number(arg(`rows-${t}`, rowsPerBatch)), pg, ds, threads, ins: null, ids: arg(`ids-${t}`, 'v4'), table: 'request_log', pg_: [], main: [] };
}

const COLS = `created_at, request_id, api_key_id, user_id, provider_id, provider_key_id, endpoint, model, priority, status,
  error_code, prompt_tokens, completion_tokens, queue_ms, upstream_ms, overhead_ms, attempts, stream, route_id, attempt_log,
  cost_micro_usd, id, team_id, served_model`;
const TYPES = ['timestamptz', 'varchar', 'uuid', 'uuid', 'uuid', 'uuid', 'varchar', 'varchar', 'varchar', 'int', 'varchar', 'int',
  'int', 'int', 'int', 'int', 'smallint', 'boolean', 'uuid', 'jsonb', 'bigint', 'uuid', 'uuid', 'varchar'];
const columns = (rows, ids) => [
  rows.map((r) => r.createdAt), rows.map((r) => r.requestId), rows.map((r) => r.apiKeyId), rows.map((r) => r.userId),
  rows.map((r) => r.providerId), rows.map((r) => r.providerKeyId), rows.map((r) => r.endpoint), rows.map((r) => r.model),
  rows.map((r) => r.priority), rows.map((r) => r.status), rows.map((r) => r.errorCode), rows.map((r) => r.promptTokens),
  rows.map((r) => r.completionTokens), rows.map((r) => r.queueMs), rows.map((r) => r.upstreamMs), rows.map((r) => r.overheadMs),
  rows.map((r) => r.attempts), rows.map((r) => r.stream), rows.map((r) => r.routeId ?? null),
  rows.map((r) => (r.attemptLog ? JSON.stringify(r.attemptLog) : null)), rows.map((r) => (r.costMicroUsd == null ? null : String(r.costMicroUsd))),
  ids, rows.map((r) => r.teamId ?? null), rows.map((r) => r.servedModel ?? null),
];
const unnestSql = (table) => `INSERT INTO ${table} (${COLS}) SELECT * FROM unnest(${TYPES.map((t, i) => `$${i + 1}::${t}[]`).join(', ')})`;
// An array literal: elements quoted unless numeric/boolean/uuid; NULL for null.
const lit = (values, kind) => {
  let out = '{';
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (i) out += ',';
    if (v === null || v === undefined) out += 'NULL';
    else if (kind === 'raw') out += v;
    else if (kind === 'date') out += v.toISOString();
    else out += `"${String(v).replace(/["\\]/g, '\\$&')}"`;
  }
  return out + '}';
};
const KINDS = TYPES.map((t) => (t === 'timestamptz' ? 'date' : ['uuid', 'int', 'smallint', 'boolean', 'bigint'].includes(t) ? 'raw' : 'text'));
// Each runs in a transaction (below) except `writer`: the build's own RequestLogWriter.insert
// (its transaction and spend-rollup statement included).
const inserts = {
  writer: null,
  unnest: (m, table, rows, ids) => m.query(unnestSql(table), columns(rows, ids)),
  projectset: (m, table, rows, ids) =>
    m.query(`INSERT INTO ${table} (${COLS}) SELECT ${TYPES.map((t, i) => `unnest($${i + 1}::${t}[])`).join(', ')}`, columns(rows, ids)),
  'no-attempt-log': (m, table, rows, ids) => m.query(unnestSql(table), columns(rows, ids).map((c, i) => (i === 19 ? c.map(() => null) : c))),
  literal: (m, table, rows, ids) => m.query(unnestSql(table), columns(rows, ids).map((c, i) => lit(c, KINDS[i]))),
};

const keys = Array.from({ length: 4 }, () => randomUUID()), users = Array.from({ length: 4 }, () => randomUUID());
const provider = randomUUID(), pkey = randomUUID();
let t = Date.now() - 3_600_000;
const row = (i) => ({
  createdAt: new Date(t += 1), requestId: `req-${randomUUID()}`, apiKeyId: keys[i % 4], userId: users[i % 4],
  providerId: provider, providerKeyId: pkey, endpoint: 'chat', model: 'gpt-4o-mini', priority: 'normal',
  status: i % 50 === 0 ? 429 : 200, errorCode: null, promptTokens: 12, completionTokens: 9, queueMs: 0, upstreamMs: 1,
  overheadMs: 0, attempts: 1, stream: false, routeId: null,
  // null as in the bench: a plain request's single attempt is not stored (only routed or retried ones)
  attemptLog: argv.includes('--attempt-log') ? [{ attempt: 1, provider_id: provider, model: 'gpt-4o-mini', key_id: pkey, status: 200, outcome: 'ok', ms: 1 }] : null,
  costMicroUsd: 7, servedModel: null, teamId: null,
});
const ns = (tid) => { try { return Number(readFileSync(`/proc/${process.pid}/task/${tid}/schedstat`, 'utf8').split(' ')[0]); } catch { return 0; } };
// schedstat: ns on CPU (the stat file's utime/stime tick every 10 ms, too coarse for one batch)
const cpu = (s) => ({ main: ns(process.pid) / 1000, pg: s.threads.reduce((a, t) => a + ns(t), 0) / 1000 });
// UUIDv7 (RFC 9562): 48-bit Unix ms, then random bits — ids that grow with time.
const uuidv7 = () => {
  const h = randomUUID().replaceAll('-', '');
  const ms = Date.now().toString(16).padStart(12, '0');
  const v = `${ms}7${h.slice(13, 16)}${((parseInt(h[16], 16) & 3) | 8).toString(16)}${h.slice(17)}`;
  return `${v.slice(0, 8)}-${v.slice(8, 12)}-${v.slice(12, 16)}-${v.slice(16, 20)}-${v.slice(20)}`;
};
const write = async (s, record) => {
  const rows = Array.from({ length: s.rows }, (_, i) => row(i)), ids = rows.map(s.ids === 'v7' ? uuidv7 : () => randomUUID());
  const c0 = cpu(s);
  if (s.ins === null) await s.writer.insert(rows);
  else await s.ds.manager.transaction((m) => s.ins(m, s.table, rows, ids));
  const c1 = cpu(s);
  if (record) { s.pg_.push((c1.pg - c0.pg) / s.rows); s.main.push((c1.main - c0.main) / s.rows); }
};
const lsn = async (s) => (await s.ds.query('SELECT pg_current_wal_lsn() AS l'))[0].l;
const lsnBytes = (l) => { const [hi, lo] = l.split('/'); return parseInt(hi, 16) * 2 ** 32 + parseInt(lo, 16); };
sides.A.ins = inserts[arg('insert-a', 'unnest')];
sides.B.ins = inserts[arg('insert-b', 'unnest')];
for (let i = 0; i < 4; i++) { await write(sides.A, false); await write(sides.B, false); }
for (const s of Object.values(sides)) s.wal0 = lsnBytes(await lsn(s));
for (let i = 0; i < pairs; i++) for (const s of i % 2 ? [sides.B, sides.A] : [sides.A, sides.B]) await write(s, true);
const q = (a, f) => { const s = [...a].sort((x, y) => x - y); return s[Math.min(s.length - 1, Math.floor(s.length * f))]; };
for (const [k, s] of Object.entries(sides)) console.log(`${k}: pg ${q(s.pg_, 0.5).toFixed(1)} µs/row (quartiles ${q(s.pg_, 0.25).toFixed(1)}–${q(s.pg_, 0.75).toFixed(1)}), main ${q(s.main, 0.5).toFixed(1)} µs/row`);
for (const [k, s] of Object.entries(sides)) console.log(`${k}: WAL ${((lsnBytes(await lsn(s)) - s.wal0) / (pairs * s.rows)).toFixed(0)} bytes/row`);
const r = sides.A.pg_.map((a, i) => sides.B.pg_[i] / a);
console.log(`B/A pg CPU per pair: median ${q(r, 0.5).toFixed(3)}, quartiles ${q(r, 0.25).toFixed(3)}–${q(r, 0.75).toFixed(3)}, B lower in ${r.filter((x) => x < 1).length} of ${r.length}`);
for (const s of Object.values(sides)) { await s.ds.destroy(); await s.pg.stop(); }
process.exit(0);
