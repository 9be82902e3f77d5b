// Probe (not part of `npm run bench`): what a gateway's RSS is made of, idle, after the memory
// section's load (autocannon, 64 connections, 5 s, as `bench/run.mjs --only memory`), 12 s later
// and after a forced GC. Per phase: /proc/<pid>/smaps grouped (WebAssembly memory reservations,
// glibc's brk heap and thread arenas, other anonymous memory, files), process.memoryUsage(), the V8
// heap spaces and the WebAssembly memory sizes (bench/probes/rss-preload.mjs), then the mappings that
// grew most between idle and after-load.
//   npm run build && node bench/probes/rss.mjs [embedded|distributed] [--seconds 5] [--after 12] [--full] [--snap]
// Variants: XENV='{"MALLOC_ARENA_MAX":"2"}' (extra gateway environment), NODEFLAGS='--max-semi-space-size=4'.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
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
// --full: the full bench's load before its memory reading (warm-up 2 s, then 5 s at 1, 8, 64, 256 connections)
const load = argv.includes('--full') ? { levels: [1, 8, 64, 256], durationS: 5, warmupS: 2 } : { levels: [64], durationS: seconds, warmupS: 0 };
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
async function heapSnapshot(label) {
  if (!wantSnap) return;
  writeFileSync(`${out}.snap-${label}`, '');
  const file = `${out}.${label}.heapsnapshot`;
  for (let i = 0; i < 600 && !existsSync(`${file}`); i++) await sleep(100);
  await sleep(3000);
  console.log(`heap snapshot: ${file}`);
}

function snapshot(pid, label) {
  const j = JSON.parse(readFileSync(out, 'utf8'));
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
const gw = await startGateway(mode, {
  name: 'rss-probe',
  env: { RSS_OUT: out, ...(process.env.XENV ? JSON.parse(process.env.XENV) : {}) },
  nodeFlags: [...(process.env.NODEFLAGS ? process.env.NODEFLAGS.split(' ') : []), '--import', new URL('./rss-preload.mjs', import.meta.url).pathname],
});
try {
  const { clientKey } = await configure(gw, upstream.url);
  await sleep(idleS * 1000);
  const snaps = [snapshot(gw.pid, 'idle')];
  await heapSnapshot('idle');
  const sampler = rssSampler(gw.pid);
  const r = await sweep(
    { name: 'gw', url: gw.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` }, pid: gw.pid },
    load,
  );
  await sleep(600);
  snaps.push(snapshot(gw.pid, `load end (peak ${f(sampler.stop())})`));
  await sleep(afterS * 1000);
  snaps.push(snapshot(gw.pid, `${afterS} s after`));
  await gw.gc();
  await sleep(600);
  snaps.push(snapshot(gw.pid, 'after forced GC'));
  await heapSnapshot('after');
  for (const l of r.levels) console.log(`load c=${l.connections}: ${f(l.rps)} req/s, ${f(l.cpuUsPerReq)} µs CPU/req`);
  print(snaps);
} finally {
  await gw.stop();
  await upstream.stop?.();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
