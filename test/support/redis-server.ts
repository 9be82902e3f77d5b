import { spawn, type ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { freePort } from './gateway.js';
import { pollUntil } from './cluster.js';

/**
 * A redis-server of the test's own, on a free loopback port, that the test may freeze (SIGSTOP),
 * thaw (SIGCONT), kill (SIGKILL) and start again on the same port — never the shared Redis other
 * test files use. Keeps nothing on disk (`--save "" --appendonly no`): a restart starts empty.
 */
export class OwnRedis {
  private proc: ChildProcess | undefined;
  private out = '';

  private constructor(readonly port: number) {}

  static async start(): Promise<OwnRedis> {
    const r = new OwnRedis(await freePort());
    await r.launch();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.proc?.pid;
  }

  private async launch(): Promise<void> {
    const proc = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--protected-mode',
        'no',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    proc.stdout!.on('data', (d: Buffer) => (this.out = (this.out + d.toString()).slice(-4000)));
    proc.stderr!.on('data', (d: Buffer) => (this.out = (this.out + d.toString()).slice(-4000)));
    this.proc = proc;
    await pollUntil(
      async () => {
        if (proc.exitCode !== null) throw new Error(`redis-server exited (${proc.exitCode}): ${this.out}`);
        const c = new Redis(this.url, {
          lazyConnect: true,
          maxRetriesPerRequest: 0,
          retryStrategy: () => null,
        });
        c.on('error', () => undefined);
        try {
          await c.connect();
          return (await c.ping()) === 'PONG';
        } catch {
          return false;
        } finally {
          c.disconnect();
        }
      },
      { timeoutMs: 10_000, intervalMs: 50, what: `redis-server on port ${this.port}` },
    );
  }

  /** SIGSTOP: connections stay open, nothing is answered. */
  freeze(): void {
    this.proc?.kill('SIGSTOP');
  }

  /** SIGCONT: it answers again, starting with everything that arrived meanwhile. */
  thaw(): void {
    this.proc?.kill('SIGCONT');
  }

  /** SIGKILL: every connection reset, the port closed, every key gone. */
  async kill(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((resolve) => proc.once('exit', resolve));
    proc.kill('SIGCONT');
    proc.kill('SIGKILL');
    await exited;
  }

  /** A fresh, empty redis-server on the same port. */
  async restart(): Promise<void> {
    await this.kill();
    await this.launch();
  }

  async stop(): Promise<void> {
    await this.kill();
  }
}
