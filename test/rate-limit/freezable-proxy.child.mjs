// Runs test/support/tcp-proxy.ts's FreezableProxy in its own process (transpiled with swc), so the
// proxy's forwarding does not queue behind the load the test process itself generates.
// Parent → child messages: 'freeze' | 'thaw' | 'close'; child → parent: { port } once listening.
import { transformFileSync } from '@swc/core';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL, fileURLToPath } from 'node:url';

const source = fileURLToPath(new URL('../support/tcp-proxy.ts', import.meta.url));
const { code } = transformFileSync(source, {
  jsc: { parser: { syntax: 'typescript' }, target: 'es2022' },
  module: { type: 'es6' },
});
const dir = mkdtempSync(join(tmpdir(), 'fgproxy-'));
const out = join(dir, 'tcp-proxy.mjs');
writeFileSync(out, code);
const { FreezableProxy } = await import(pathToFileURL(out).href);
rmSync(dir, { recursive: true, force: true });

const [host, port] = process.argv.slice(2);
const proxy = new FreezableProxy(host, Number(port));
await proxy.start();
process.on('message', async (message) => {
  if (message === 'freeze') proxy.freeze();
  else if (message === 'thaw') proxy.thaw();
  else if (message === 'close') {
    await proxy.close();
    process.exit(0);
  }
  process.send?.({ ack: message });
});
process.on('disconnect', () => process.exit(0));
process.send({ port: proxy.port });
