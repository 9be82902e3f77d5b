// Summarises a V8 .cpuprofile (node --cpu-prof): self time per function (aggregated by function
// name + script + line, since the same function appears under many call paths) and per "where"
// (our code by module, each npm package, node internals, GC, idle).
import { readFileSync } from 'node:fs';

const ROOT = new URL('../../', import.meta.url).href;

function shortUrl(url) {
  if (!url) return '';
  let u = url.startsWith(ROOT) ? url.slice(ROOT.length) : url;
  const nm = u.lastIndexOf('node_modules/');
  if (nm !== -1) u = u.slice(nm);
  return u;
}

/** Where a frame belongs: src/<module>, npm package, node:internal, or a V8 pseudo-frame. */
function owner(frame) {
  const name = frame.functionName;
  const url = frame.url ?? '';
  if (!url) {
    if (name === '(idle)' || name === '(program)' || name === '(garbage collector)') return name;
    return '(native/V8)';
  }
  const nm = url.lastIndexOf('node_modules/');
  if (nm !== -1) {
    const rest = url.slice(nm + 'node_modules/'.length).split('/');
    return rest[0].startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0];
  }
  const src = /\/dist\/src\/([^/]+)\//.exec(url);
  if (src) return `floodgate src/${src[1]}`;
  if (/\/dist\/src\/[^/]+\.js$/.test(url)) return 'floodgate src';
  if (url.startsWith('node:')) return 'node: (core)';
  if (url.includes('/bench/')) return 'bench preload';
  return shortUrl(url);
}

/**
 * `fromUs`/`toUs`: only samples in this window count (µs on the monotonic clock shared by V8's
 * profiler and process.hrtime, so the bench can cut start-up and shutdown out of the profile).
 */
export function summarise(file, { top = 30, fromUs = -Infinity, toUs = Infinity } = {}) {
  const profile = JSON.parse(readFileSync(file, 'utf8'));
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map();
  let t = profile.startTime;
  for (let i = 0; i < profile.samples.length; i++) {
    const delta = profile.timeDeltas[i] ?? 0;
    t += delta;
    if (t < fromUs || t > toUs) continue;
    const id = profile.samples[i];
    selfUs.set(id, (selfUs.get(id) ?? 0) + delta);
  }
  const parent = new Map();
  for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
  /** The owner of the nearest JavaScript frame above a native one (who called the builtin). */
  const caller = (id) => {
    for (let p = parent.get(id); p !== undefined; p = parent.get(p)) {
      const f = byId.get(p).callFrame;
      if (f.url) return owner(f);
    }
    return '(native/V8)';
  };
  const fns = new Map();
  const owners = new Map();
  const withNative = new Map();
  let total = 0;
  let idle = 0;
  for (const [id, us] of selfUs) {
    const node = byId.get(id);
    const f = node.callFrame;
    total += us;
    if (f.functionName === '(idle)') {
      idle += us;
      continue;
    }
    const key = `${f.functionName || '(anonymous)'}\u0000${f.url}\u0000${f.lineNumber}`;
    const e = fns.get(key) ?? { fn: f.functionName || '(anonymous)', url: shortUrl(f.url), line: f.lineNumber + 1, us: 0, owner: owner(f) };
    e.us += us;
    fns.set(key, e);
    const o = owner(f);
    owners.set(o, (owners.get(o) ?? 0) + us);
    const w = o === '(native/V8)' ? caller(id) : o;
    withNative.set(w, (withNative.get(w) ?? 0) + us);
  }
  const busy = total - idle;
  const pct = (us) => (busy > 0 ? (100 * us) / busy : 0);

  // Stretches of consecutive samples inside something (the event loop can't serve anyone then).
  const inside = (test) => {
    const memo = new Map();
    const hit = (id) => {
      if (memo.has(id)) return memo.get(id);
      const f = byId.get(id).callFrame;
      const r = test(f) || (parent.has(id) && hit(parent.get(id)));
      memo.set(id, r);
      return r;
    };
    return hit;
  };
  const stretches = {
    'any busy stretch (loop not idle)': inside((f) => f.functionName !== '(idle)' && f.functionName !== '(root)'),
    'garbage collection': inside((f) => f.functionName === '(garbage collector)'),
    'typeorm (request-log INSERT building)': inside((f) => (f.url ?? '').includes('/node_modules/typeorm/')),
  };
  const longest = {};
  for (const [name, hit] of Object.entries(stretches)) {
    const runs = [];
    let cur = 0;
    let tt = profile.startTime;
    for (let i = 0; i < profile.samples.length; i++) {
      const delta = profile.timeDeltas[i] ?? 0;
      tt += delta;
      if (tt < fromUs || tt > toUs) continue;
      const node = byId.get(profile.samples[i]);
      const busySample = node.callFrame.functionName !== '(idle)';
      if (busySample && hit(profile.samples[i])) cur += delta;
      else if (cur) {
        runs.push(cur);
        cur = 0;
      }
    }
    if (cur) runs.push(cur);
    runs.sort((a, b) => b - a);
    longest[name] = runs.slice(0, 5).map((us) => us / 1000);
  }
  return {
    longest,
    totalMs: total / 1000,
    busyMs: busy / 1000,
    idleShare: total > 0 ? idle / total : 0,
    functions: [...fns.values()].sort((a, b) => b.us - a.us).slice(0, top).map((e) => ({ ...e, pct: pct(e.us) })),
    owners: [...owners.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([name, us]) => ({ name, ms: us / 1000, pct: pct(us), withNativePct: pct(withNative.get(name) ?? 0) })),
    nativeCallers: [...withNative.entries()]
      .filter(([name]) => !owners.has(name))
      .map(([name, us]) => ({ name, ms: us / 1000, pct: pct(us), withNativePct: pct(us) })),
  };
}

export function summaryMarkdown(s, title, requests) {
  const lines = [];
  lines.push(`### ${title}`);
  lines.push('');
  lines.push(
    `Load phase only: ${s.totalMs.toFixed(0)} ms sampled, ${(s.idleShare * 100).toFixed(0)} % idle; percentages are of the ${s.busyMs.toFixed(0)} ms the process was busy (self time)${requests ? `, i.e. ${((s.busyMs * 1000) / requests).toFixed(0)} µs of CPU per request` : ''}.`,
  );
  lines.push('');
  lines.push('| where | self ms | self % | self % incl. the native builtins it called |');
  lines.push('| --- | ---: | ---: | ---: |');
  const rows = [...s.owners, ...s.nativeCallers.map((o) => ({ ...o, ms: 0, pct: 0 }))].sort(
    (a, b) => b.withNativePct - a.withNativePct,
  );
  for (const o of rows.slice(0, 24)) {
    const own = o.name === '(native/V8)' ? `${o.withNativePct.toFixed(1)} (unattributed)` : o.withNativePct.toFixed(1);
    lines.push(`| ${o.name} | ${o.ms.toFixed(1)} | ${o.pct.toFixed(1)} | ${own} |`);
  }
  lines.push('');
  lines.push('Longest uninterrupted stretches (the event loop serves nobody meanwhile), ms:');
  lines.push('');
  for (const [name, runs] of Object.entries(s.longest)) lines.push(`- ${name}: ${runs.map((r) => r.toFixed(1)).join(', ') || 'none'}`);
  lines.push('');
  lines.push('| function | file:line | self % |');
  lines.push('| --- | --- | ---: |');
  for (const f of s.functions) lines.push(`| \`${f.fn}\` | ${f.url ? `${f.url}:${f.line}` : '(V8)'} | ${f.pct.toFixed(1)} |`);
  lines.push('');
  return lines.join('\n');
}
