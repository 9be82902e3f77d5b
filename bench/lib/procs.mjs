// Child processes and cleanup for the bench: every process it starts and every resource it creates
// (databases, Redis prefixes) registers a cleanup here, run on normal exit, on errors and on
// SIGINT/SIGTERM. Children also watch their parent (see serve.mjs, gateway-preload.mjs) and exit if
// the bench dies without cleaning up.
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';

const cleanups = new Set();
const children = new Set();
let installed = false;
let cleaning = null;
let shuttingDown = false;

/** True once Ctrl-C / SIGTERM / a fatal error started the shutdown: start nothing new. */
export const stopping = () => shuttingDown;

/** Throws when the bench is shutting down (called before creating any process or resource). */
export function checkRunning() {
  if (shuttingDown) throw new Error('the bench is shutting down');
}

/** Registers an async cleanup; returns a function that unregisters it. */
export function onCleanup(fn) {
  cleanups.add(fn);
  return () => cleanups.delete(fn);
}

/** Runs every registered cleanup (newest first), each bounded in time. Idempotent. */
export function cleanupAll() {
  cleaning ??= (async () => {
    // until nothing is left: a resource created while cleaning up registers a cleanup too
    while (cleanups.size > 0) {
      const fn = [...cleanups].pop();
      cleanups.delete(fn);
      await withTimeout(Promise.resolve().then(fn), 20_000, 'cleanup').catch((err) =>
        console.error(`bench cleanup: ${err.message}`),
      );
    }
    cleaning = null;
  })();
  return cleaning;
}

let bail = () => undefined;

/** Stops the whole bench: cleans up, then exits with `code` (also used by the global time limit). */
export function abort(code, why) {
  bail(code, why);
}

export function installSignalHandlers() {
  if (installed) return;
  installed = true;
  bail = (code, why) => {
    if (shuttingDown) return;
    shuttingDown = true;
    console.error(`\nbench: ${why}: cleaning up`);
    const hard = setTimeout(() => process.exit(code), 45_000);
    hard.unref();
    // twice, a moment apart: whatever was being created when the signal came registers meanwhile
    cleanupAll()
      .then(() => sleep(500))
      .then(() => cleanupAll())
      .finally(() => process.exit(code));
  };
  process.once('SIGINT', () => bail(130, 'interrupted'));
  process.once('SIGTERM', () => bail(143, 'terminated'));
  process.on('unhandledRejection', (err) => bail(1, `unhandled rejection: ${err?.stack ?? err}`));
  // Last resort: never leave a child behind, whatever happened.
  process.on('exit', () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
    }),
  ]);
}

/** Waits for a child to exit: SIGTERM, then SIGKILL after `graceMs`. */
export async function stopChild(child, graceMs = 10_000) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

/** Spawns a node process and keeps track of it (killed on cleanup). */
export function spawnNode(args, { env = process.env, stdio = ['ignore', 'pipe', 'pipe'], cwd } = {}) {
  checkRunning();
  const child = spawn(process.execPath, args, { env, stdio, cwd });
  children.add(child);
  child.once('exit', () => children.delete(child));
  const off = onCleanup(() => stopChild(child));
  child.once('exit', off);
  return child;
}

/**
 * Starts a bench server (fake upstream or plain proxy) in its own process, so it never shares an
 * event loop with the load generator. Returns { url, pid, close, ... extra fields it printed }.
 */
export async function startServer(kind, options = {}) {
  const script = new URL('./serve.mjs', import.meta.url).pathname;
  const child = spawnNode([script, kind, JSON.stringify(options)], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines = createInterface({ input: child.stdout });
  const first = await withTimeout(
    new Promise((resolve, reject) => {
      lines.once('line', resolve);
      child.once('exit', (code) => reject(new Error(`${kind} server exited (${code}) before it was ready`)));
    }),
    15_000,
    `${kind} server start`,
  );
  const info = JSON.parse(first);
  return { ...info, pid: child.pid, close: () => stopChild(child, 3000) };
}

// ---- /proc readers (Linux) ------------------------------------------------------------------

let clkTck = 100;
try {
  const { execFileSync } = await import('node:child_process');
  clkTck = Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
} catch {
  // keep 100, the Linux default
}

/** CPU time (user + system) of a process in microseconds, from /proc/<pid>/stat. */
export function cpuMicros(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    // fields[0] is state (field 3); utime is field 14, stime field 15
    return ((Number(fields[11]) + Number(fields[12])) * 1e6) / clkTck;
  } catch {
    return NaN;
  }
}

/** Resident set size in MB (10^6 bytes), from /proc/<pid>/status. */
export function rssMB(pid) {
  try {
    const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? (Number(m[1]) * 1024) / 1e6 : NaN;
  } catch {
    return NaN;
  }
}

/** Samples RSS every `everyMs` until stopped; returns { stop(): peak MB }. */
export function rssSampler(pid, everyMs = 200) {
  let peak = rssMB(pid);
  const t = setInterval(() => {
    const v = rssMB(pid);
    if (v > peak || !Number.isFinite(peak)) peak = v;
  }, everyMs);
  return {
    peek: () => peak,
    stop: () => {
      clearInterval(t);
      const v = rssMB(pid);
      return Math.max(peak, Number.isFinite(v) ? v : 0);
    },
  };
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
