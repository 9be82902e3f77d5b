// Child-process entry for bench servers: `node bench/lib/serve.mjs upstream|plain '<json options>'`.
// Prints one JSON line ({ url }) when listening; exits on SIGTERM/SIGINT or when its parent (the
// bench) goes away, so a killed bench never leaves a server behind.
import { startFakeUpstream } from './fake-upstream.mjs';
import { startPlainProxy } from './plain-proxy.mjs';

const [kind, raw] = process.argv.slice(2);
const options = JSON.parse(raw || '{}');
const server =
  kind === 'upstream'
    ? await startFakeUpstream(options)
    : kind === 'plain'
      ? await startPlainProxy(options.upstreamUrl, options)
      : null;
if (!server) {
  console.error(`serve.mjs: unknown kind ${kind}`);
  process.exit(2);
}
process.stdout.write(`${JSON.stringify({ url: server.url })}\n`);

const parent = process.ppid;
const stop = () => {
  setTimeout(() => process.exit(0), 2000).unref();
  server.close().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
setInterval(() => {
  if (process.ppid !== parent) stop();
}, 1000).unref();
