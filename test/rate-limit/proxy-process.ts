import { fork, type ChildProcess } from 'node:child_process';

/**
 * test/support/tcp-proxy.ts's FreezableProxy, run in a child process: the proxy must forward bytes
 * at Redis speed even while this process (two gateways and their clients) is busy.
 */
export class ProxyProcess {
  private child: ChildProcess | undefined;
  port = 0;

  constructor(
    private readonly host: string,
    private readonly targetPort: number,
  ) {}

  async start(): Promise<void> {
    this.child = fork(
      new URL('./freezable-proxy.child.mjs', import.meta.url),
      [this.host, String(this.targetPort)],
      { stdio: 'inherit' },
    );
    this.port = await new Promise<number>((resolve, reject) => {
      this.child!.once('message', (m: { port?: number }) =>
        m.port ? resolve(m.port) : reject(new Error('proxy did not start')),
      );
      this.child!.once('exit', (code) => reject(new Error(`proxy exited (${code})`)));
    });
  }

  private send(message: 'freeze' | 'thaw'): Promise<void> {
    return new Promise((resolve) => {
      const onAck = (m: { ack?: string }): void => {
        if (m.ack !== message) return;
        this.child!.off('message', onAck);
        resolve();
      };
      this.child!.on('message', onAck);
      this.child!.send(message);
    });
  }

  freeze(): Promise<void> {
    return this.send('freeze');
  }

  thaw(): Promise<void> {
    return this.child?.connected ? this.send('thaw') : Promise.resolve();
  }

  async close(): Promise<void> {
    if (!this.child || this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child!.once('exit', r));
    this.child.send('close');
    await exited;
  }

  url(redisUrl: string): string {
    const u = new URL(redisUrl);
    u.hostname = '127.0.0.1';
    u.port = String(this.port);
    return u.toString();
  }
}
