// Probe (not part of `npm run bench`): what a gateway's RSS is made of, idle, after the memory
// section's load (autocannon, 64 connections, 5 s, as `bench/run.mjs --only memory`), 12 s later
// and after a forced GC. Per phase: /proc/<pid>/smaps grouped (WebAssembly memory reservations,
// glibc's brk heap and thread arenas, other anonymous memory, files), process.memoryUsage(), the V8
// heap spaces and the WebAssembly memory sizes (bench/probes/rss-preload.mjs), then the mappings that
// grew most between idle and after-load.
//   npm run build && node bench/probes/rss.mjs [embedded|distributed] [--seconds 5] [--after 12] [--full [--level-seconds 5]] [--snap] [--malloc] [--entry dist-before/src/main.js]
// --malloc: glibc's per-arena view (malloc_info) idle and after, then RSS after malloc_trim(0)
// (bench/probes/malloc-ctl.c preloaded; needs gcc). --arenas: which thread owns which arena (gdb).
// --entry: another build (A/B: run both in turn).
// Variants: XENV='{"MALLOC_ARENA_MAX":"2"}' (extra gateway environment), NODEFLAGS='--max-semi-space-size=4'.
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { closeRedis, configure, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, rssMB, rssSampler, sleep, startServer } from '../lib/procs.mjs';
import { sweep } from '../sections/throughput.mjs';

const argv = process.argv.slice(2);
const opt = (name, dflt) => {
  const i = argv.indexOf(`--${name}`);
  return i === -1 ? dflt : Number(argv[i + 1]);
};
const mode = argv.find((a) => a === 'embedded' || a === 'distributed') ?? 'distributed';
const seconds = opt('seconds', 5);
const afterS = opt('after', 12);
const idleS = opt('idle', 12);
// --full: the full bench's load before its memory reading (warm-up 2 s, then 5 s at 1, 8, 64, 256
// connections); --level-seconds N: N s per level instead of 5 (a loaded machine serves a fraction of
// the quiet full bench's requests: 3–5× longer levels reach its request count).
const load = argv.includes('--full') ? { levels: [1, 8, 64, 256], durationS: opt('level-seconds', 5), warmupS: 2 } : { levels: [64], durationS: seconds, warmupS: 0 };
const out = `/tmp/rss-probe-${process.pid}.json`;

/** /proc/<pid>/smaps → [{ start, end, perms, path, sizeKb, rssKb, anonKb }] */
function smaps(pid) {
  const maps = [];
  let cur = null;
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const h = /^([0-9a-f]+)-([0-9a-f]+) (\S+) \S+ \S+ \S+\s*(.*)$/.exec(line);
    if (h) {
      cur = { start: BigInt(`0x${h[1]}`), end: BigInt(`0x${h[2]}`), perms: h[3], path: h[4], rssKb: 0, anonKb: 0 };
      cur.sizeKb = Number((cur.end - cur.start) / 1024n);
      maps.push(cur);
      continue;
    }
    const f = /^(Rss|Anonymous):\s+(\d+) kB/.exec(line);
    if (f && cur) cur[f[1] === 'Rss' ? 'rssKb' : 'anonKb'] = Number(f[2]);
  }
  return maps;
}

const ARENA = 64n * 1024n * 1024n;
function classify(maps) {
  const g = { wasm: 0, brk: 0, arenas: 0, anonOther: 0, file: 0, stack: 0 };
  for (let i = 0; i < maps.length; i++) {
    const m = maps[i];
    const mb = m.rssKb / 1000;
    if (m.path === '[heap]') g.brk += mb;
    else if (m.path === '[stack]') g.stack += mb;
    else if (m.path && !m.path.startsWith('[')) g.file += mb;
    else if (m.sizeKb >= 4 * 1024 * 1024) g.wasm += mb; // V8 reserves 8–10 GB per WebAssembly memory
    else if (m.start % ARENA === 0n && m.sizeKb <= 65536 && (maps[i + 1]?.perms === '---p' || m.sizeKb === 65536)) g.arenas += mb;
    else g.anonOther += mb;
  }
  return g;
}

const wantSnap = argv.includes('--snap');
const wantMalloc = argv.includes('--malloc');
const wantArenas = argv.includes('--arenas');

/** --malloc: glibc's own view, through bench/probes/malloc-ctl.c preloaded into the gateway. */
const MALLOC_CTL = '/tmp/malloc-ctl.so';
if (wantMalloc) execFileSync('gcc', ['-O2', '-shared', '-fPIC', '-o', MALLOC_CTL, new URL('./malloc-ctl.c', import.meta.url).pathname, '-lpthread']);
async function mallocCtl(pid, cmd) {
  const file = `/tmp/malloc-ctl-${pid}.cmd`;
  rmSync(`${file}.done`, { force: true });
  writeFileSync(file, cmd);
  for (let i = 0; i < 100 && !existsSync(`${file}.done`); i++) await sleep(50);
}
/** Per arena: MB mapped (system) and MB free inside it (fast bins + the rest). */
async function mallocInfo(pid, label) {
  const file = `${out}.malloc-${label}.xml`;
  await mallocCtl(pid, `info ${file}`);
  const xml = readFileSync(file, 'utf8');
  return [...xml.matchAll(/<heap nr="(\d+)">([\s\S]*?)<\/heap>/g)].map(([, nr, body]) => {
    const num = (re) => Number(re.exec(body)?.[1] ?? 0);
    return {
      nr: Number(nr),
      system: num(/<system type="current" size="(\d+)"/) / 1e6,
      free: (num(/<total type="fast" count="\d+" size="(\d+)"/) + num(/<total type="rest" count="\d+" size="(\d+)"/)) / 1e6,
    };
  });
}
const mallocTrim = (pid) => mallocCtl(pid, 'trim');
/**
 * --arenas: which thread uses which glibc arena (gdb reads each thread's `thread_arena`; needs
 * glibc's debug symbols), with each arena's resident MB from smaps. A thread is named by what it
 * waits in: the event loops (main, the embedded Postgres worker, V8's delayed-task scheduler) in
 * epoll, the V8 platform and libuv threadpool threads on a futex.
 */
function arenaOwners(pid, maps) {
  const out = execFileSync('gdb', ['-p', String(pid), '-batch', '-nx', '-ex', 'thread apply all print (void*)thread_arena', '-ex', 'print mp_'], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'ignore'],
    timeout: 60_000,
  });
  const rows = [];
  let tid = null;
  for (const line of out.split('\n')) {
    const t = /\(LWP (\d+)\)/.exec(line);
    if (t) tid = Number(t[1]);
    const a = /^\$\d+ = \(void \*\) (0x[0-9a-f]+)( <main_arena>)?/.exec(line);
    if (a && tid !== null) {
      const addr = BigInt(a[1]);
      const base = a[2] ? null : addr & ~(ARENA - 1n);
      const map = base === null ? maps.find((m) => m.path === '[heap]') : maps.find((m) => m.start === base);
      let wait = '?';
      try {
        wait = { 7: 'poll', 202: 'futex', 232: 'epoll', 281: 'epoll' }[readFileSync(`/proc/${pid}/task/${tid}/syscall`, 'utf8').split(' ')[0]] ?? 'running';
      } catch {}
      rows.push({ tid, arena: base === null ? 'main (brk)' : `0x${base.toString(16)}`, rssMB: map ? map.rssKb / 1000 : 0, wait });
      tid = null;
    }
  }
  const mp = /mmap_threshold = (\d+)/.exec(out);
  const tt = /trim_threshold = (\d+)/.exec(out);
  if (mp && tt) console.log(`glibc thresholds 12 s after: mmap ${(Number(mp[1]) / 1e6).toFixed(2)} MB, trim ${(Number(tt[1]) / 1e6).toFixed(2)} MB`);
  return rows.sort((x, y) => x.tid - y.tid);
}

function threads(pid) {
  const names = {};
  for (const t of readdirSync(`/proc/${pid}/task`)) {
    const n = readFileSync(`/proc/${pid}/task/${t}/comm`, 'utf8').trim();
    names[n] = (names[n] ?? 0) + 1;
  }
  return names;
}
async function heapSnapshot(label) {
  if (!wantSnap) return;
  writeFileSync(`${out}.snap-${label}`, '');
  const file = `${out}.${label}.heapsnapshot`;
  for (let i = 0; i < 600 && !existsSync(`${file}`); i++) await sleep(100);
  await sleep(3000);
  console.log(`heap snapshot: ${file}`);
}

function readOut() {
  // the preload rewrites the file every 500 ms: a read can catch it half-written
  for (let i = 0; ; i++) {
    try {
      return JSON.parse(readFileSync(out, 'utf8'));
    } catch (err) {
      if (i >= 50) throw err;
      execFileSync('sleep', ['0.02']);
    }
  }
}

function snapshot(pid, label) {
  const j = readOut();
  const maps = smaps(pid);
  return { label, rss: rssMB(pid), groups: classify(maps), maps, j };
}

const f = (n) => (Number.isFinite(n) ? n.toFixed(1) : 'n/a');
function print(snaps) {
  const rows = [
    ['RSS (VmRSS)', (s) => s.rss],
    ['smaps: WebAssembly memory', (s) => s.groups.wasm],
    ['smaps: malloc brk heap', (s) => s.groups.brk],
    ['smaps: malloc thread arenas', (s) => s.groups.arenas],
    ['smaps: other anonymous', (s) => s.groups.anonOther],
    ['smaps: files (code)', (s) => s.groups.file],
    ['heapTotal', (s) => s.j.heapTotal],
    ['heapUsed', (s) => s.j.heapUsed],
    ['external', (s) => s.j.external],
    ['arrayBuffers', (s) => s.j.arrayBuffers],
    ['V8 malloced', (s) => s.j.malloced],
    ...Object.keys(snaps[0].j.spaces).map((k) => [`space ${k} (committed)`, (s) => s.j.spaces[k].size]),
    ['WebAssembly memories', (s) => s.j.wasm.map(f).join(' + ')],
  ];
  console.log(`| ${mode} | ${snaps.map((s) => s.label).join(' | ')} |`);
  console.log(`| --- | ${snaps.map(() => '---:').join(' | ')} |`);
  for (const [name, get] of rows) console.log(`| ${name} | ${snaps.map((s) => (typeof get(s) === 'string' ? get(s) : f(get(s)))).join(' | ')} |`);
  const [a, b] = [snaps[0], snaps[2]];
  const before = new Map(a.maps.map((m) => [m.start, m]));
  const grew = b.maps
    .map((m) => ({ m, d: (m.rssKb - (before.get(m.start)?.rssKb ?? 0)) / 1000 }))
    .filter((x) => Math.abs(x.d) >= 1)
    .sort((x, y) => y.d - x.d)
    .slice(0, 12);
  console.log(`\nmappings that changed most, ${a.label} → ${b.label} (MB):`);
  for (const { m, d } of grew) console.log(`  ${d >= 0 ? '+' : ''}${d.toFixed(1)}  ${m.start.toString(16)} ${m.perms} size ${(m.sizeKb / 1024).toFixed(0)} MiB rss ${(m.rssKb / 1000).toFixed(1)} ${m.path}`);
}

installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const entryIdx = argv.indexOf('--entry');
const gw = await startGateway(mode, {
  name: 'rss-probe',
  ...(entryIdx === -1 ? {} : { entry: argv[entryIdx + 1] }),
  env: { RSS_OUT: out, ...(wantMalloc ? { LD_PRELOAD: MALLOC_CTL } : {}), ...(process.env.XENV ? JSON.parse(process.env.XENV) : {}) },
  nodeFlags: [...(process.env.NODEFLAGS ? process.env.NODEFLAGS.split(' ') : []), '--import', new URL('./rss-preload.mjs', import.meta.url).pathname],
});
try {
  const { clientKey } = await configure(gw, upstream.url);
  await sleep(idleS * 1000);
  const snaps = [snapshot(gw.pid, 'idle')];
  const mallocInfoIdle = wantMalloc ? await mallocInfo(gw.pid, 'idle') : null;
  await heapSnapshot('idle');
  const sampler = rssSampler(gw.pid);
  const r = await sweep(
    { name: 'gw', url: gw.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` }, pid: gw.pid },
    load,
  );
  await sleep(600);
  snaps.push(snapshot(gw.pid, `load end (peak ${f(sampler.stop())})`));
  // every second until the reading: RSS, heap committed/used, young generation (MB)
  const timeline = [];
  for (let t = 1; t <= afterS; t++) {
    await sleep(1000);
    const j = readOut();
    timeline.push(`${t}s ${f(rssMB(gw.pid))}/${f(j.heapTotal)}/${f(j.heapUsed)}/${f(j.spaces.new.size)}`);
  }
  snaps.push(snapshot(gw.pid, `${afterS} s after`));
  // embedded: LocalDb's keys by shape at this moment (written by the preload every 2 s)
  const localDbShapes = existsSync(`${out}.localdb`) ? readFileSync(`${out}.localdb`, 'utf8') : null;
  const owners = wantArenas ? arenaOwners(gw.pid, snaps.at(-1).maps) : null;
  await gw.gc();
  await sleep(600);
  snaps.push(snapshot(gw.pid, 'after forced GC'));
  await heapSnapshot('after');
  if (wantMalloc) {
    const info = { idle: mallocInfoIdle, after: await mallocInfo(gw.pid, 'after') };
    await mallocTrim(gw.pid);
    await sleep(300);
    snaps.push(snapshot(gw.pid, 'after malloc_trim(0)'));
    info.trimmed = await mallocInfo(gw.pid, 'trimmed');
    console.log(`threads: ${JSON.stringify(threads(gw.pid))}`);
    console.log('glibc arenas (malloc_info; MB mapped / free inside):');
    for (const [label, heaps] of Object.entries(info))
      console.log(`  ${label}: ${heaps.map((h) => `#${h.nr} ${f(h.system)}/${f(h.free)}`).join('  ')}`);
  }
  for (const l of r.levels) console.log(`load c=${l.connections}: ${f(l.rps)} req/s, ${f(l.cpuUsPerReq)} µs CPU/req`);
  console.log(`requests in the load: ~${Math.round(r.levels.reduce((t, l) => t + l.rps * load.durationS, 0))}; load average ${readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ')}`);
  print(snaps);
  console.log(`\nafter the load, RSS/heapTotal/heapUsed/young: ${timeline.join('  ')}`);
  if (localDbShapes) {
    console.log(`\nLocalDb keys by shape, ${afterS} s after (keys, sorted-set items, member chars, hash fields):`);
    const shapes = Object.entries(JSON.parse(localDbShapes)).sort((x, y) => y[1].zsetItems - x[1].zsetItems);
    for (const [k, v] of shapes.slice(0, 12)) console.log(`  ${k}: ${v.keys} / ${v.zsetItems} / ${v.memberChars} / ${v.hashFields}`);
  }
  if (owners) {
    const idleMaps = new Map(snaps[0].maps.map((m) => [`0x${m.start.toString(16)}`, m]));
    console.log(`\nglibc arenas by thread, ${snaps[2].label} (MB resident; idle):`);
    for (const o of owners) console.log(`  tid ${o.tid} (${o.wait}): arena ${o.arena} ${f(o.rssMB)} (${f((idleMaps.get(o.arena)?.rssKb ?? NaN) / 1000)})`);
  }
} finally {
  await gw.stop();
  await upstream.stop?.();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
