// Compares two V8 heap snapshots (bench/probes/rss.mjs --snap): self size by node type + constructor
// name, biggest growth first. node bench/probes/heap-diff.mjs a.heapsnapshot b.heapsnapshot
import { readFileSync } from 'node:fs';

function summary(file) {
  const s = JSON.parse(readFileSync(file, 'utf8'));
  const f = s.snapshot.meta.node_fields;
  const types = s.snapshot.meta.node_types[0];
  const n = f.length;
  const [iType, iName, iSize] = ['type', 'name', 'self_size'].map((k) => f.indexOf(k));
  const by = new Map();
  for (let i = 0; i < s.nodes.length; i += n) {
    const type = types[s.nodes[i + iType]];
    let name = s.strings[s.nodes[i + iName]];
    if (type === 'string' || type === 'concatenated string' || type === 'sliced string') name = '(strings)';
    else if (type === 'code') name = '(code)';
    else if (name.length > 60) name = `${name.slice(0, 60)}…`;
    const key = `${type}:${name}`;
    const e = by.get(key) ?? { count: 0, size: 0 };
    e.count++;
    e.size += s.nodes[i + iSize];
    by.set(key, e);
  }
  return by;
}

const [a, b] = process.argv.slice(2).map(summary);
const keys = new Set([...a.keys(), ...b.keys()]);
const rows = [...keys].map((k) => {
  const x = a.get(k) ?? { count: 0, size: 0 };
  const y = b.get(k) ?? { count: 0, size: 0 };
  return { k, d: y.size - x.size, dc: y.count - x.count, size: y.size };
});
rows.sort((p, q) => q.d - p.d);
const total = (m) => [...m.values()].reduce((t, e) => t + e.size, 0);
console.log(`total self size ${(total(a) / 1e6).toFixed(1)} → ${(total(b) / 1e6).toFixed(1)} MB`);
for (const r of rows.slice(0, 25)) console.log(`${(r.d / 1e6).toFixed(2).padStart(8)} MB ${String(r.dc).padStart(8)} objs  ${r.k}`);
