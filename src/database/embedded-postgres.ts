import { Logger } from '@nestjs/common';
import { PGlite } from '@electric-sql/pglite';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { cp, mkdir, mkdtemp, readdir, rename, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { promisify } from 'node:util';
import { Worker } from 'node:worker_threads';

/**
 * Postgres settings for the embedded server, added to PGlite's own start parameters. PGlite's
 * emscripten build backs Postgres' shared memory with zero-filled heap, so every byte of
 * shared_buffers is resident from the first second: the default 128MB was most of the process.
 * 16MB holds the gateway's working set (a few small tables); reads beyond it come from the OS page
 * cache. WebAssembly memory never shrinks, so the per-operation budgets are capped too: a peak
 * (an index build, a big sort) would otherwise stay resident for the life of the process.
 */
export const EMBEDDED_PG_SETTINGS: Readonly<Record<string, string>> = {
  shared_buffers: '16MB',
  wal_buffers: '1MB',
  work_mem: '2MB',
  maintenance_work_mem: '16MB',
  temp_buffers: '2MB',
};

const startParams = (): string[] => [
  ...PGlite.defaultStartParams,
  ...Object.entries(EMBEDDED_PG_SETTINGS).flatMap(([name, value]) => ['-c', `${name}=${value}`]),
];

/**
 * PAGE_BACKED_ARTIFACTS: PGlite reads its 9 MB WebAssembly module and 6 MB file-system bundle with
 * fs.readFile, into malloc'd buffers. glibc serves a block that large with mmap and, when it is
 * freed, raises its mmap threshold to the block's size and its trim threshold to twice that (its
 * "dynamic threshold"): from then on, for the life of the process, every allocation under 9 MB
 * comes from the heap and arenas, and no arena gives back a free top under 18 MB. After a burst,
 * the server thread's arena stayed 15–20 MB above its idle size for good (probe:
 * bench/probes/rss.mjs --arenas; glibc's `mp_` read with gdb: mmap_threshold 9,089,024). Read into
 * a resizable ArrayBuffer instead, which V8 maps from the OS page allocator, not malloc, these
 * files never touch glibc, and the thresholds stay near their 128 KB default.
 *
 * The embedded server's thread: PGlite and its socket server run in a worker thread, so Postgres'
 * work (a request-log batch INSERT, an index scan: WebAssembly that runs to completion) never
 * blocks the gateway's event loop — in-process it held the loop for stretches of tens of ms under
 * load, during which no request moved. The gateway still talks to it over the loopback socket with
 * the ordinary `pg` driver, as before.
 *
 * PGlite's 9 MB WebAssembly module is compiled with V8's baseline compiler (Liftoff) only. By
 * default V8 recompiles hot functions with TurboFan in the background; for Postgres that optimised
 * code and the compiler's working memory cost ~60 MB resident (measured: 233 → 171 MB after 9,000
 * queries standalone) for ~10–20 % faster SQL execution, of which the gateway runs little (batched
 * writes). V8 fixes a module's tiering when it compiles it, so the flag is set around PGlite's
 * compile only and other WebAssembly (undici's HTTP parser) keeps the optimising tier.
 *
 * CommonJS source evaluated by the worker (`eval: true`): it runs the same from the compiled build
 * and from TypeScript sources under the test runner.
 */
const SERVER_THREAD = `
  const { parentPort, workerData } = require('node:worker_threads');
  const { setFlagsFromString } = require('node:v8');
  const { PGlite } = require(workerData.pglite);
  const { PGLiteSocketServer } = require(workerData.socket);
  let db;
  let server;
  // A file read into page-allocated memory (see PAGE_BACKED_ARTIFACTS).
  function readPageBacked(path) {
    const fs = require('node:fs');
    const fd = fs.openSync(path, 'r');
    try {
      const size = fs.fstatSync(fd).size;
      const bytes = new Uint8Array(new ArrayBuffer(size, { maxByteLength: size }));
      for (let off = 0; off < size; ) {
        const n = fs.readSync(fd, bytes, off, size - off, off);
        if (n === 0) throw new Error('unexpected end of ' + path);
        off += n;
      }
      return bytes;
    } finally {
      fs.closeSync(fd);
    }
  }
  (async () => {
    setFlagsFromString('--liftoff-only');
    try {
      const dist = require('node:path').dirname(workerData.pglite);
      const [wasm, bundle] = [dist + '/pglite.wasm', dist + '/pglite.data'];
      // (A PGlite that ships them elsewhere loads them itself.)
      const artifacts = {};
      if (require('node:fs').existsSync(wasm) && require('node:fs').existsSync(bundle)) {
        const data = readPageBacked(bundle);
        artifacts.pgliteWasmModule = new WebAssembly.Module(readPageBacked(wasm));
        artifacts.fsBundle = { arrayBuffer: async () => data.buffer };
      }
      db = await PGlite.create(workerData.pgdata, { startParams: workerData.startParams, ...artifacts });
    } finally {
      setFlagsFromString('--no-liftoff-only');
    }
    server = new PGLiteSocketServer({ db, host: workerData.host, port: 0, maxConnections: workerData.maxConnections });
    await server.start();
    parentPort.postMessage({ type: 'ready', conn: server.getServerConn() });
  })().catch((err) => parentPort.postMessage({ type: 'error', message: String((err && err.stack) || err) }));
  parentPort.on('message', async (msg) => {
    if (msg !== 'stop') return;
    if (server) await server.stop().catch(() => undefined);
    if (db) await db.close().catch(() => undefined);
    parentPort.postMessage({ type: 'stopped' });
  });
`;

type ServerThreadMessage =
  { type: 'ready'; conn: string } | { type: 'error'; message: string } | { type: 'stopped' };

/**
 * Runs initdb in a child process. Initialising a cluster in-process costs a second PGlite instance,
 * the initdb module and a tarball of the new cluster: ~500 MB that the garbage collector frees late
 * and the allocator mostly never returns to the OS (~160 MB stayed resident after a forced GC). A
 * process that exits returns all of it.
 */
async function initdbInChild(pgdata: string): Promise<void> {
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  const script = `
    const [entry, dir, params] = process.argv.slice(1);
    const { PGlite } = require(entry);
    PGlite.create(dir, { startParams: JSON.parse(params) })
      .then((db) => db.close())
      .catch((err) => { console.error(err); process.exit(1); });`;
  await promisify(execFile)(
    process.execPath,
    ['--liftoff-only', '-e', script, entry, pgdata, JSON.stringify(startParams())],
    {
      timeout: 120_000,
    },
  );
}

/**
 * A fresh cluster, initialised once per PGlite build and settings and kept under the OS temp
 * directory; new data directories are copies of it (what PGlite's own clone() does, minus the
 * tarball). initdb takes seconds; a copy takes milliseconds.
 */
async function templateCluster(): Promise<string> {
  const entry = createRequire(import.meta.url).resolve('@electric-sql/pglite');
  const version = (
    JSON.parse(readFileSync(join(dirname(entry), '..', 'package.json'), 'utf8')) as { version: string }
  ).version;
  const key = createHash('sha256')
    .update(`${entry}\n${version}\n${startParams().join(' ')}`)
    .digest('hex')
    .slice(0, 16);
  const root = join(tmpdir(), 'floodgate-pglite');
  const template = join(root, `template-${version}-${key}`);
  if (existsSync(join(template, 'PG_VERSION'))) return template;
  await mkdir(root, { recursive: true });
  const building = await mkdtemp(join(root, 'building-'));
  try {
    await initdbInChild(join(building, 'pgdata'));
    // Atomic: readers see a complete template or none. Losing a race to another process is fine.
    await rename(join(building, 'pgdata'), template).catch((err: NodeJS.ErrnoException) => {
      if (!existsSync(join(template, 'PG_VERSION'))) throw err;
    });
  } finally {
    await rm(building, { recursive: true, force: true });
  }
  return template;
}

/** Makes `pgdata` a Postgres cluster if it is not one yet. */
async function ensureCluster(pgdata: string): Promise<void> {
  if (existsSync(join(pgdata, 'PG_VERSION'))) return;
  await mkdir(dirname(pgdata), { recursive: true });
  try {
    const template = await templateCluster();
    await rm(pgdata, { recursive: true, force: true });
    await cp(template, pgdata, { recursive: true });
  } catch {
    // No usable temp directory (read-only, cleaned mid-copy…): initialise in place instead.
    await rm(pgdata, { recursive: true, force: true });
    await initdbInChild(pgdata);
  }
}

const THROWAWAY_PREFIX = 'floodgate-memory-';

/** :memory: directories of processes that are gone (killed: no exit handler ran). */
async function removeOrphanedThrowaways(): Promise<void> {
  const names = await readdir(tmpdir()).catch(() => [] as string[]);
  for (const name of names) {
    if (!name.startsWith(THROWAWAY_PREFIX)) continue;
    const pid = Number(name.slice(THROWAWAY_PREFIX.length).split('-')[0]);
    if (!Number.isInteger(pid) || pid <= 0 || isAlive(pid)) continue;
    await rm(join(tmpdir(), name), { recursive: true, force: true }).catch(() => undefined);
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Embedded mode's Postgres: PGlite in this process, served on a loopback socket so TypeORM talks to
 * it through the ordinary `pg` driver — the same SQL and migrations as production.
 *
 * DATA_DIR=:memory: is a throwaway cluster in a private temp directory, removed at stop: files in
 * the OS page cache rather than in PGlite's in-heap file system (which held the cluster, its 16MB
 * WAL segments and the tarball it was loaded from as JavaScript buffers). A killed process's
 * directory is removed by the next start on the machine (its name carries the pid).
 */
export class EmbeddedPostgres {
  private readonly logger = new Logger('EmbeddedPostgres');
  private thread: Worker | undefined;
  private throwaway: string | undefined;
  host = '127.0.0.1';
  port = 0;
  /** Where the cluster's files are (for :memory:, a temp directory that stop() removes). */
  directory: string | undefined;

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
    let pgdata: string;
    if (this.dataDir === ':memory:') {
      await removeOrphanedThrowaways();
      this.throwaway = await mkdtemp(join(tmpdir(), `${THROWAWAY_PREFIX}${process.pid}-`));
      // Also on process.exit() without a shutdown (e.g. a configuration error after start).
      process.once('exit', this.removeThrowaway);
      pgdata = join(this.throwaway, 'pgdata');
    } else {
      pgdata = join(this.dataDir, 'pgdata');
    }
    this.directory = pgdata;
    await ensureCluster(pgdata);
    const require = createRequire(import.meta.url);
    const thread = new Worker(SERVER_THREAD, {
      eval: true,
      // The thread's own JavaScript is small (PGlite's glue, the socket server's buffers; the
      // database lives in WebAssembly memory, outside these limits): a small young generation
      // keeps its isolate from growing semi-spaces it never gives back.
      resourceLimits: { maxYoungGenerationSizeMb: 2 },
      workerData: {
        pglite: require.resolve('@electric-sql/pglite'),
        socket: require.resolve('@electric-sql/pglite-socket'),
        pgdata,
        startParams: startParams(),
        host: this.host,
        maxConnections: this.maxConnections,
      },
    });
    this.thread = thread;
    const conn = await new Promise<string>((resolvePort, reject) => {
      const onExit = (code: number) => reject(new Error(`embedded Postgres thread exited (code ${code})`));
      thread.once('error', reject);
      thread.once('exit', onExit);
      thread.once('message', (msg: ServerThreadMessage) => {
        thread.off('exit', onExit);
        thread.off('error', reject);
        if (msg.type === 'ready') resolvePort(msg.conn);
        else
          reject(
            new Error(`embedded Postgres failed to start: ${msg.type === 'error' ? msg.message : msg.type}`),
          );
      });
    }).catch(async (err: unknown) => {
      this.thread = undefined;
      await thread.terminate();
      throw err;
    });
    // A crash of the server thread after start leaves the gateway without its database: say so.
    thread.on('error', (err) => this.logger.error(`embedded Postgres thread failed: ${String(err)}`));
    this.port = Number(conn.slice(conn.lastIndexOf(':') + 1));
    this.logger.log(`embedded Postgres (PGlite) ready in ${Date.now() - started} ms, data ${this.location}`);
  }

  async stop(): Promise<void> {
    const thread = this.thread;
    const throwaway = this.throwaway;
    this.thread = undefined;
    this.throwaway = undefined;
    if (thread) {
      // The server and the database close in their thread (a checkpoint for a kept data directory).
      const stopped = new Promise<void>((done) => {
        thread.on('message', (msg: ServerThreadMessage) => msg.type === 'stopped' && done());
        thread.once('exit', () => done());
      });
      thread.postMessage('stop');
      await Promise.race([stopped, new Promise((done) => setTimeout(done, 10_000).unref())]);
      await thread.terminate();
    }
    if (throwaway) {
      process.off('exit', this.removeThrowaway);
      await rm(throwaway, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  private readonly removeThrowaway = (): void => {
    if (this.throwaway) rmSync(this.throwaway, { recursive: true, force: true });
  };
}
