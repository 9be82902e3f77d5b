import { spawn, type ChildProcess } from 'node:child_process';

/**
 * Runs in its own process (the gateway under test shares the test's event loop; the proxy must keep
 * its pace whatever that loop does). Client → server bytes go through a delay line: a chunk that
 * arrives at `t` is written to the server at `t + lag(t)`, never before an earlier chunk (order kept);
 * server → client bytes pass at once. `lag(t)` ramps linearly from its current value to the target
 * over `rampMs`, so a client that keeps writing keeps receiving replies (no silent gap when the lag
 * grows): what a Redis that has fallen behind looks like to a client whose earlier commands it is
 * still answering, one after the other.
 */
const LAG_PROXY_SOURCE = String.raw`
const net = require('node:net');
const host = process.env.LP_HOST;
const targetPort = Number(process.env.LP_PORT);
let from = 0, to = 0, rampStart = 0, rampMs = 0;
function lagNow() {
  const t = Date.now() - rampStart;
  if (rampMs <= 0 || t >= rampMs) return to;
  return from + (to - from) * (t / rampMs);
}
const sockets = new Set();
const server = net.createServer((client) => {
  const upstream = net.connect(targetPort, host);
  sockets.add(client); sockets.add(upstream);
  let lastRelease = 0;
  client.on('data', (chunk) => {
    const now = Date.now();
    const at = Math.max(now + lagNow(), lastRelease);
    lastRelease = at;
    if (at <= now) upstream.write(chunk);
    else setTimeout(() => { if (!upstream.destroyed) upstream.write(chunk); }, at - now);
  });
  upstream.pipe(client);
  const end = () => { sockets.delete(client); sockets.delete(upstream); client.destroy(); upstream.destroy(); };
  client.on('error', end).on('close', end);
  upstream.on('error', end).on('close', end);
});
server.listen(0, '127.0.0.1', () => process.send({ port: server.address().port }));
process.on('message', (m) => {
  if (m.cmd === 'lag') { from = lagNow(); to = m.ms; rampStart = Date.now(); rampMs = m.rampMs; }
  if (m.cmd === 'close') { for (const s of sockets) s.destroy(); server.close(); process.send({ ack: m.id }); process.exit(0); }
  process.send({ ack: m.id });
});
process.on('disconnect', () => process.exit(0));
`;

/** A TCP proxy whose client → server direction can be made to lag (see LAG_PROXY_SOURCE). */
export class LagProxy {
  private seq = 0;

  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
  ) {}

  static async start(serviceUrl: string): Promise<LagProxy> {
    const u = new URL(serviceUrl);
    const child = spawn(process.execPath, ['-e', LAG_PROXY_SOURCE], {
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      env: { LP_HOST: u.hostname, LP_PORT: u.port || '6379' },
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.once('message', (m: { port?: number }) =>
        m.port ? resolve(m.port) : reject(new Error('lag proxy did not start')),
      );
      child.once('exit', (code) => reject(new Error(`lag proxy exited (${code})`)));
    });
    return new LagProxy(child, port);
  }

  private command(message: Record<string, unknown>): Promise<void> {
    const id = ++this.seq;
    return new Promise((resolve) => {
      if (!this.child.connected) return resolve();
      const onMessage = (m: { ack?: number }): void => {
        if (m.ack !== id) return;
        this.child.off('message', onMessage);
        resolve();
      };
      this.child.on('message', onMessage);
      this.child.send({ ...message, id });
    });
  }

  /** Client → server bytes lag `ms` behind, reached linearly over `rampMs` (0: at once). */
  lag(ms: number, rampMs = 0): Promise<void> {
    return this.command({ cmd: 'lag', ms, rampMs });
  }

  async close(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    await this.command({ cmd: 'close' });
    await exited;
  }

  /** `serviceUrl` with its host:port replaced by the proxy's. */
  url(serviceUrl: string): string {
    const u = new URL(serviceUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}
