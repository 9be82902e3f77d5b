// Probe (not part of `npm run bench`): the embedded Postgres server thread alone under a
// request-log-like workload — what its glibc arena and the process's RSS keep afterwards, without
// the HTTP load of bench/probes/rss.mjs (faster, and steady on a busy machine).
//   npm run build && node bench/probes/rss-embedded-pg.mjs [--dist dist-before] [--batches 80] [--after 12] [--rows 500]
// Workload: 4 pooled connections; every ~200 ms a 500-row unnest INSERT shaped like
// RequestLogWriter's (~150 KB of array parameters; --rows N: the same rows in INSERTs of N), between
// them small queries.
import { readFileSync } from 'node:fs';
import pg from 'pg';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : argv[i + 1];
};
const dist = opt('dist', 'dist');
const batches = Number(opt('batches', 80));
const afterS = Number(opt('after', 12));
const rows = Number(opt('rows', 500));
const { EmbeddedPostgres } = await import(new URL(`../../${dist}/src/database/embedded-postgres.js`, import.meta.url).href);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const ARENA = 64n * 1024n * 1024n;
function groups() {
  const g = { rss: 0, arenas: 0, brk: 0, anon: 0 };
  let prev = null;
  const maps = [];
  for (const line of readFileSync('/proc/self/smaps', 'utf8').split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (h) {
      prev = { start: BigInt(`0x${h[1]}`), size: (BigInt(`0x${h[2]}`) - BigInt(`0x${h[1]}`)) / 1024n, perms: h[3], path: h[4], rss: 0 };
      maps.push(prev);
    } else if (prev && line.startsWith('Rss:')) prev.rss = Number(/(\d+)/.exec(line)[1]) / 1000;
  }
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    g.rss += m.rss;
    if (m.path === '[heap]') g.brk += m.rss;
    else if (!m.path && m.start % ARENA === 0n && m.size <= 65536n && (maps[i + 1]?.perms === '---p' || m.size === 65536n)) g.arenas += m.rss;
    else if (!m.path) g.anon += m.rss;
  }
  return g;
}
const show = (label, g) => console.log(`${label.padEnd(14)} RSS ${g.rss.toFixed(1)}  arenas ${g.arenas.toFixed(1)}  brk ${g.brk.toFixed(1)}  other anon ${g.anon.toFixed(1)}`);

const db = new EmbeddedPostgres(':memory:', 4);
await db.start();
const pool = new pg.Pool({ host: db.host, port: db.port, user: 'postgres', password: 'postgres', database: 'postgres', max: 4 });
await pool.query(`CREATE TABLE request_log (id bigserial, created_at timestamptz, request_id varchar(128), api_key_id uuid, user_id uuid,
  provider_id uuid, provider_key_id uuid, endpoint varchar(32), model varchar(255), priority varchar(8), status int,
  error_code varchar(64), prompt_tokens int, completion_tokens int, queue_ms int, upstream_ms int, overhead_ms int,
  attempts smallint, stream boolean)`);
await sleep(12_000);
const idle = groups();
show('idle', idle);
const uuid = () => crypto.randomUUID();
const ids = [uuid(), uuid(), uuid(), uuid()];
const insert = (n) => {
  const col = (f) => Array.from({ length: n }, f);
  return pool.query(
    `INSERT INTO request_log (created_at, request_id, api_key_id, user_id, provider_id, provider_key_id, endpoint, model,
       priority, status, error_code, prompt_tokens, completion_tokens, queue_ms, upstream_ms, overhead_ms, attempts, stream)
     SELECT * FROM unnest($1::timestamptz[], $2::varchar[], $3::uuid[], $4::uuid[], $5::uuid[], $6::uuid[], $7::varchar[],
       $8::varchar[], $9::varchar[], $10::int[], $11::varchar[], $12::int[], $13::int[], $14::int[], $15::int[], $16::int[],
       $17::smallint[], $18::boolean[])`,
    [
      col(() => new Date()), col(() => uuid()), col(() => ids[0]), col(() => ids[1]), col(() => ids[2]), col(() => ids[3]),
      col(() => 'chat'), col(() => 'gpt-4o-mini'), col(() => 'normal'), col(() => 200), col(() => null), col(() => 12),
      col(() => 34), col(() => 0), col(() => 1), col(() => 1), col(() => 1), col(() => false),
    ],
  );
};
const t0 = Date.now();
for (let i = 0; i < batches; i++) {
  for (let n = 0; n < 500; n += rows) await insert(Math.min(rows, 500 - n));
  await Promise.all([pool.query('SELECT count(*) FROM request_log'), pool.query('SELECT now()')]);
  await sleep(200);
}
const load = groups();
show(`load (${((Date.now() - t0) / 1000).toFixed(0)} s)`, load);
await sleep(afterS * 1000);
const after = groups();
show(`${afterS} s after`, after);
console.log(`after − idle: RSS ${(after.rss - idle.rss).toFixed(1)} MB, arenas ${(after.arenas - idle.arenas).toFixed(1)} MB`);
await pool.end();
await db.stop();
process.exit(0);
