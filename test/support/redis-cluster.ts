import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Cluster, Redis } from 'ioredis';
import { pollUntil } from './cluster.js';
import { freePort } from './gateway.js';

const run = promisify(execFile);

interface Node {
  port: number;
  busPort: number;
  dir: string;
  proc: ChildProcess;
  out: string;
}

/**
 * A real Redis Cluster of the test's own: three `redis-server --cluster-enabled yes` masters on
 * free 127.0.0.1 ports (each with its own cluster bus port and working directory under one temp
 * dir), joined by `redis-cli --cluster create … --cluster-replicas 0`, ready once every node says
 * `cluster_state:ok`. Keeps nothing on disk beyond the nodes.conf files; `stop()` kills the nodes
 * and deletes the temp dir. Never touches the shared Redis on 6379.
 */
export class OwnRedisCluster {
  private constructor(
    private readonly root: string,
    private readonly nodes: Node[],
  ) {}

  static async start(size = 3): Promise<OwnRedisCluster> {
    const root = await mkdtemp(join(tmpdir(), 'floodgate-redis-cluster-'));
    const nodes: Node[] = [];
    const cluster = new OwnRedisCluster(root, nodes);
    try {
      const ports = new Set<number>();
      while (ports.size < size * 2) ports.add(await freePort());
      const list = [...ports];
      for (let i = 0; i < size; i++) nodes.push(await launch(root, list[2 * i]!, list[2 * i + 1]!));
      await Promise.all(nodes.map((n) => waitForPing(n)));
      await run('redis-cli', [
        '--cluster',
        'create',
        ...nodes.map((n) => `127.0.0.1:${n.port}`),
        '--cluster-replicas',
        '0',
        '--cluster-yes',
      ]);
      await Promise.all(nodes.map((n) => waitForState(n)));
      return cluster;
    } catch (err) {
      const logs = nodes.map((n) => `--- node ${n.port}\n${n.out}`).join('\n');
      await cluster.stop();
      throw new Error(`could not start a local Redis Cluster: ${(err as Error).message}\n${logs}`);
    }
  }

  /** `host:port` of every node (the REDIS_CLUSTER_NODES form). */
  get addresses(): string[] {
    return this.nodes.map((n) => `127.0.0.1:${n.port}`);
  }

  get ports(): number[] {
    return this.nodes.map((n) => n.port);
  }

  /** An ioredis Cluster client on the nodes (the caller disconnects it). */
  client(): Cluster {
    return new Cluster(
      this.nodes.map((n) => ({ host: '127.0.0.1', port: n.port })),
      { redisOptions: { maxRetriesPerRequest: 1 } },
    );
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (n) => {
        if (n.proc.exitCode !== null || n.proc.signalCode !== null) return;
        const exited = new Promise((resolve) => n.proc.once('exit', resolve));
        n.proc.kill('SIGKILL');
        await exited;
      }),
    );
    await rm(this.root, { recursive: true, force: true });
  }
}

async function launch(root: string, port: number, busPort: number): Promise<Node> {
  const dir = join(root, String(port));
  await run('mkdir', ['-p', dir]);
  const proc = spawn(
    'redis-server',
    [
      '--port',
      String(port),
      '--cluster-port',
      String(busPort),
      '--bind',
      '127.0.0.1',
      '--cluster-enabled',
      'yes',
      '--cluster-config-file',
      join(dir, 'nodes.conf'),
      '--cluster-node-timeout',
      '2000',
      '--dir',
      dir,
      '--save',
      '',
      '--appendonly',
      'no',
      '--protected-mode',
      'no',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const node: Node = { port, busPort, dir, proc, out: '' };
  const keep = (d: Buffer) => (node.out = (node.out + d.toString()).slice(-4000));
  proc.stdout!.on('data', keep);
  proc.stderr!.on('data', keep);
  return node;
}

async function withNode<T>(node: Node, fn: (c: Redis) => Promise<T>): Promise<T> {
  if (node.proc.exitCode !== null)
    throw new Error(`redis-server ${node.port} exited (${node.proc.exitCode})`);
  const c = new Redis({
    host: '127.0.0.1',
    port: node.port,
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    retryStrategy: () => null,
  });
  c.on('error', () => undefined);
  try {
    await c.connect();
    return await fn(c);
  } finally {
    c.disconnect();
  }
}

async function waitForPing(node: Node): Promise<void> {
  await pollUntil(() => withNode(node, async (c) => (await c.ping()) === 'PONG'), {
    timeoutMs: 10_000,
    intervalMs: 50,
    what: `redis-server on port ${node.port}`,
  });
}

async function waitForState(node: Node): Promise<void> {
  await pollUntil(
    () => withNode(node, async (c) => String(await c.cluster('INFO')).includes('cluster_state:ok')),
    { timeoutMs: 20_000, intervalMs: 100, what: `cluster_state:ok on port ${node.port}` },
  );
}
