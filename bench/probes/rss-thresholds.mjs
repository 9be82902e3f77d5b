// Probe (not part of `npm run bench`): glibc's dynamic mmap/trim thresholds of a gateway (gdb reads
// `mp_`; needs glibc's debug symbols) after start, after configuration + idle, and after a load
// (5 s at 64 connections). A freed mmapped block larger than the threshold raises both for the life
// of the process (trim = 2 × mmap), after which every arena keeps up to `trim` MB free at its top
// after a burst (docs/performance.md, "Issue 14: RSS after load").
//   npm run build && node bench/probes/rss-thresholds.mjs [embedded|distributed] [--entry dist-before/src/main.js]
import { execFileSync } from 'node:child_process';
import { closeRedis, configure, startGateway } from '../lib/gateway.mjs';
import { cleanupAll, installSignalHandlers, rssMB, sleep, startServer } from '../lib/procs.mjs';
import { sweep } from '../sections/throughput.mjs';

const argv = process.argv.slice(2);
const mode = argv.find((a) => a === 'embedded' || a === 'distributed') ?? 'distributed';
const entryIdx = argv.indexOf('--entry');
function thresholds(pid, label) {
  const out = execFileSync('gdb', ['-p', String(pid), '-batch', '-nx', '-ex', 'print mp_'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 60_000 });
  const mmap = Number(/mmap_threshold = (\d+)/.exec(out)?.[1]);
  const trim = Number(/trim_threshold = (\d+)/.exec(out)?.[1]);
  console.log(`${label.padEnd(22)} mmap ${(mmap / 1e6).toFixed(2)} MB, trim ${(trim / 1e6).toFixed(2)} MB, RSS ${rssMB(pid).toFixed(1)} MB`);
}
installSignalHandlers();
const upstream = await startServer('upstream', { delayMs: 0 });
const gw = await startGateway(mode, { name: 'rss-thr', ...(entryIdx === -1 ? {} : { entry: argv[entryIdx + 1] }) });
try {
  thresholds(gw.pid, 'started');
  const { clientKey } = await configure(gw, upstream.url);
  await sleep(12_000);
  thresholds(gw.pid, 'configured, 12 s idle');
  // --watch: who raises it next (gdb stops at the first write to mp_.mmap_threshold, prints the
  // native stack and detaches)
  let watcher = null;
  if (argv.includes('--watch')) {
    const { spawn } = await import('node:child_process');
    watcher = spawn('gdb', ['-p', String(gw.pid), '-batch', '-nx', '-ex', 'watch -l mp_.mmap_threshold', '-ex', 'continue', '-ex', 'bt 40', '-ex', 'info threads', '-ex', 'detach'], { stdio: ['ignore', 'pipe', 'ignore'] });
    let text = '';
    watcher.stdout.on('data', (d) => (text += d));
    watcher.on('exit', () => console.log(text.split('\n').filter((l) => /^#|Hardware|Old value|New value|^\*/.test(l)).join('\n')));
    await sleep(3000);
  }
  await sweep(
    { name: 'gw', url: gw.url, path: '/v1/chat/completions', headers: { 'content-type': 'application/json', authorization: `Bearer ${clientKey}` }, pid: gw.pid },
    { levels: [64], durationS: 5, warmupS: 0 },
  );
  await sleep(12_000);
  thresholds(gw.pid, '12 s after 5 s load');
} finally {
  await gw.stop();
  await upstream.stop?.();
  closeRedis();
  await cleanupAll();
}
process.exit(0);
