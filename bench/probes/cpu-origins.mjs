#!/usr/bin/env node
// Probe (not part of `npm run bench`): a V8 .cpuprofile's busy time by origin — src/<module>,
// npm package, node core, GC, socket-write syscalls — as a markdown table of self % and inclusive %.
// Self: each sample to the innermost JavaScript frame's origin (a builtin such as JSON.parse to the
// JavaScript that called it; writev/writeUtf8String apart). Inclusive: the origin anywhere on the stack.
//   node bench/profile.mjs --mode M --keep …   then   node bench/probes/cpu-origins.mjs <file.cpuprofile>
import { readFileSync } from 'node:fs';
const [file] = process.argv.slice(2);
const p = JSON.parse(readFileSync(file, 'utf8'));
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const parent = new Map();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const selfT = new Map(); let busy = 0;
for (let i = 0; i < p.samples.length; i++) { const d = p.timeDeltas[i] ?? 0; const id = p.samples[i]; if (byId.get(id).callFrame.functionName === '(idle)') continue; selfT.set(id, (selfT.get(id) ?? 0) + d); busy += d; }
const origin = (u) => {
  let m = u.match(/\/dist\/src\/([^/]+)\//); if (m) return `ours: src/${m[1]}`;
  m = u.match(/\/node_modules\/((?:@[^/]+\/)?[^/]+)\//); if (m) return `lib: ${m[1]}`;
  if (u.startsWith('node:')) return 'node core JS';
  if (u.startsWith('wasm:')) return 'PGlite (wasm)';
  return null;
};
const groups = new Map(); const incl = new Map();
for (const [id, t] of selfT) {
  const fn = byId.get(id).callFrame.functionName;
  let g;
  if (fn === '(garbage collector)') g = 'GC';
  else if (fn === '(program)') g = '(program: V8/native outside JS)';
  else {
    const own = origin(byId.get(id).callFrame.url);
    if (own) g = own;
    else {
      // native builtin: socket writes apart, else the nearest JS frame's origin
      let cur = parent.get(id), o = null; while (cur !== undefined && !(o = origin(byId.get(cur).callFrame.url))) cur = parent.get(cur);
      g = /^(writev|writeUtf8String|writeBuffer|writeLatin1String)$/.test(fn) ? `socket write syscalls (${o ?? '?'})` : `${o ?? 'native'} (builtins it calls)`;
    }
  }
  groups.set(g, (groups.get(g) ?? 0) + t);
  // inclusive: every origin on the stack
  const seen = new Set(); let cur = id; while (cur !== undefined) { const o = origin(byId.get(cur).callFrame.url); if (o && !seen.has(o)) { seen.add(o); incl.set(o, (incl.get(o) ?? 0) + t); } cur = parent.get(cur); }
}
const rows = [...groups.entries()].sort((a, b) => b[1] - a[1]);
for (const [g, t] of rows) if (100 * t / busy >= 0.4) console.log(`| ${g} | ${(100 * t / busy).toFixed(1)} | ${incl.has(g) ? (100 * incl.get(g) / busy).toFixed(1) : ''} |`);
let ours = 0, lib = 0; for (const [g, t] of groups) { if (g.startsWith('ours')) ours += t; else if (g.startsWith('lib')) lib += t; }
console.log('ours self (JS + builtins they call, sockets excluded)', (100 * ours / busy).toFixed(1), 'libs', (100 * lib / busy).toFixed(1));
