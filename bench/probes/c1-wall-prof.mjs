// Reads a --cpu-prof profile and the marks of bench/probes/c1-wall.mjs (--cpu-prof DIR --marks FILE)
// and books every sample taken while a request was in the gateway before its response was written
// to that request's phase; per phase, the µs per request by innermost function (self time) and by
// package. (idle) samples inside a phase are the wait (store, upstream).
//   node bench/probes/c1-wall-prof.mjs PROFILE.cpuprofile MARKS.json [--top 25] [--incl] [--hits 25 (the --cpu-prof-interval: count samples, not their deltas)]
import { readFileSync } from 'node:fs';
const [profFile, marksFile] = process.argv.slice(2);
const hits = process.argv.includes('--hits') ? Number(process.argv[process.argv.indexOf('--hits') + 1]) || 25 : 0;
const top = Number(process.argv[process.argv.indexOf('--top') + 1] || 25);
const prof = JSON.parse(readFileSync(profFile, 'utf8'));
const rows = JSON.parse(readFileSync(marksFile, 'utf8')).map((r) => {
  const o = {};
  for (const [k, v] of Object.entries(r)) if (typeof v === 'number') o[k] = v * 1000;
  o.redis0 = r.redis[0] ? r.redis[0].at * 1000 : undefined;
  o.redis0done = r.redis[0] ? r.redis[0].done * 1000 : undefined;
  return o;
});
const byId = new Map(prof.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of prof.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const pkg = (url) => {
  if (!url) return '(native)';
  const m = /node_modules\/((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (m) return m[1];
  const s = /\/dist(?:-before)?\/src\/([^/]+)/.exec(url);
  if (s) return `src/${s[1]}`;
  if (url.startsWith('node:')) return 'node';
  return url.split('/').slice(-2).join('/');
};
const phases = [
  ['client sent→start', 'clientSent', 'start'], // booked below
  ['start→handle', 'start', 'handle'],
  ['handle→redis', 'handle', 'redis0'],
  ['redis wait', 'redis0', 'redis0done'],
  ['redis→upCreate', 'redis0done', 'upCreate'],
  ['handle→upCreate (no redis)', 'handle', 'upCreate'],
  ['upCreate→upSent', 'upCreate', 'upSent'],
  ['upstream wait', 'upSent', 'upDone'],
  ['upDone→sockWrite', 'upDone', 'sockWrite'],
  ['sockWrite→afterIdle (previous response)', null, null], // booked below
];
let t = prof.startTime;
const stats = new Map();
let ri = 0;
for (let i = 0; i < prof.samples.length; i++) {
  t += prof.timeDeltas[i];
  while (ri < rows.length && rows[ri].sockWrite < t) ri++;
  let r = rows[ri];
  let ph = null;
  // after the previous response's bytes, until its setImmediate ran (release, accounting…)
  const prev = rows[ri - 1];
  if (prev && prev.afterIdle !== undefined && t >= prev.sockWrite && t < prev.afterIdle && (!r || t < r.start)) {
    ph = 'sockWrite→afterIdle (previous response)';
    r = prev;
  } else if (r && r.clientSent !== undefined && t >= r.clientSent && t < r.start) {
    ph = 'client sent→start';
  } else if (!r || t < r.start) continue;
  if (!ph) for (const [name, a, b] of phases) {
    if (r[a] === undefined || r[b] === undefined) continue;
    if (name.includes('no redis') && r.redis0 !== undefined) continue;
    if (t >= r[a] && t < r[b]) { ph = name; break; }
  }
  if (!ph) continue;
  // --hits: each sample counts the nominal interval (CPU-like: a sample delayed by the thread being
  // descheduled counts once, not for the whole delay that the next delta carries)
  const dt = hits ? hits : (prof.timeDeltas[i + 1] ?? prof.timeDeltas[i]);
  const node = byId.get(prof.samples[i]);
  const cf = node.callFrame;
  const fn = `${cf.functionName || '(anon)'} ${pkg(cf.url)}:${cf.lineNumber + 1}`;
  // the outermost frame of ours (src/…) on the stack, for a by-caller view
  let s = stats.get(ph);
  if (!s) stats.set(ph, (s = { total: 0, fn: new Map(), pkg: new Map(), incl: new Map() }));
  const seen = new Set();
  for (let id = prof.samples[i]; id !== undefined; id = parent.get(id)) {
    const f = byId.get(id).callFrame;
    if (!f.url) continue;
    const k = `${f.functionName || '(anon)'} ${pkg(f.url)}:${f.lineNumber + 1}`;
    if (seen.has(k)) continue;
    seen.add(k);
    s.incl.set(k, (s.incl.get(k) ?? 0) + dt);
  }
  s.total += dt;
  s.fn.set(fn, (s.fn.get(fn) ?? 0) + dt);
  s.pkg.set(pkg(cf.url), (s.pkg.get(pkg(cf.url)) ?? 0) + dt);
}
const n = rows.length;
for (const [name] of phases) {
  const s = stats.get(name);
  if (!s) continue;
  console.log(`\n== ${name}: ${(s.total / n).toFixed(1)} µs/request sampled`);
  console.log('  by package: ' + [...s.pkg].sort((a, b) => b[1] - a[1]).slice(0, 12).map(([k, v]) => `${k} ${(v / n).toFixed(1)}`).join(', '));
  for (const [k, v] of [...s.fn].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`  ${(v / n).toFixed(2).padStart(7)}  ${k}`);
  if (process.argv.includes('--incl')) {
    console.log('  -- inclusive, src/ and framework entry points:');
    for (const [k, v] of [...s.incl].filter(([k]) => / src\/|fastify|@nestjs|undici/.test(k)).sort((a, b) => b[1] - a[1]).slice(0, top * 2)) console.log(`  ${(v / n).toFixed(2).padStart(7)}  ${k}`);
  }
}
