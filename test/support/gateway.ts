import type { NestFastifyApplication } from '@nestjs/platform-fastify';
import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';
import { createApp } from '../../src/app/create-app.js';
import { loadConfig, type AppConfig } from '../../src/config/app-config.js';
import { createTestDatabase, dropRedisPrefix, TEST_REDIS_URL, uniqueName } from './services.js';

export type Mode = 'embedded' | 'distributed';
export const MODES: Mode[] = ['embedded', 'distributed'];

export interface TestGateway {
  url: string;
  app: NestFastifyApplication;
  config: AppConfig;
  env: Record<string, string>;
  close(): Promise<void>;
}

const TEST_ENCRYPTION_KEYS = `test1:${Buffer.alloc(32, 7).toString('base64')}`;

/**
 * Environment for one isolated gateway: embedded = PGlite in memory; distributed = a fresh database
 * on the test Postgres and a fresh key prefix on the test Redis. `cleanup` drops both.
 */
export async function isolatedEnv(
  mode: Mode,
  overrides: Record<string, string> = {},
): Promise<{ env: Record<string, string>; cleanup: () => Promise<void> }> {
  const env: Record<string, string> = {
    NODE_ENV: 'test',
    LOG_LEVEL: 'error',
    LOG_FORMAT: 'json',
    ENCRYPTION_KEYS: TEST_ENCRYPTION_KEYS,
    HOST: '127.0.0.1',
    SHUTDOWN_TIMEOUT_MS: '10000',
  };
  if (mode === 'embedded') {
    env.DATA_DIR = ':memory:';
    return { env: { ...env, ...overrides }, cleanup: async () => undefined };
  }
  const db = await createTestDatabase();
  const prefix = uniqueName('fgtest');
  env.DATABASE_URL = db.url;
  env.REDIS_URL = TEST_REDIS_URL;
  env.REDIS_PREFIX = prefix;
  return {
    env: { ...env, ...overrides },
    cleanup: async () => {
      await dropRedisPrefix(prefix);
      await db.drop();
    },
  };
}

/** Boots the real application in this process, listening on a random loopback port. */
export async function startGateway(mode: Mode, overrides: Record<string, string> = {}): Promise<TestGateway> {
  const { env, cleanup } = await isolatedEnv(mode, overrides);
  const config = loadConfig(env);
  const app = await createApp(config);
  await app.listen({ port: 0, host: '127.0.0.1' });
  const address = app.getHttpServer().address() as net.AddressInfo;
  return {
    url: `http://127.0.0.1:${address.port}`,
    app,
    config,
    env,
    close: async () => {
      await app.close();
      await cleanup();
    },
  };
}

/**
 * Several instances sharing one database and Redis prefix (distributed mode), as replicas do.
 * Closing closes them all, then drops the shared database.
 */
export async function startGateways(
  count: number,
  overrides: Record<string, string> = {},
): Promise<{ gateways: TestGateway[]; env: Record<string, string>; close(): Promise<void> }> {
  const { env, cleanup } = await isolatedEnv('distributed', overrides);
  const gateways: TestGateway[] = [];
  for (let i = 0; i < count; i++) {
    const config = loadConfig(env);
    const app = await createApp(config);
    await app.listen({ port: 0, host: '127.0.0.1' });
    const address = app.getHttpServer().address() as net.AddressInfo;
    gateways.push({ url: `http://127.0.0.1:${address.port}`, app, config, env, close: () => app.close() });
  }
  return {
    gateways,
    env,
    close: async () => {
      await Promise.all(gateways.map((g) => g.close()));
      await cleanup();
    },
  };
}

/**
 * A port nothing listens on now, for a server the test starts (and may stop and start again on the
 * same port). Taken below the kernel's ephemeral range (32768-60999 on Linux): a port from that
 * range, once free again, can become any outgoing connection's local port or another test's
 * listen(0) before the test binds it (a restart then failed with EADDRINUSE under a full suite).
 */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 100; i++) {
    const candidate = 20000 + Math.floor(Math.random() * 12000);
    if (await bindable(candidate)) return candidate;
  }
  const server = net.createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

export interface GatewayProcess {
  url: string;
  proc: ChildProcess;
  output(): string;
  exited: Promise<number | null>;
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<void>;
  stop(): Promise<void>;
}

/** Starts `node dist/src/main.js` as a user would (dist is built by the global setup). */
export function spawnGateway(
  env: Record<string, string>,
  options: { inheritPath?: boolean } = {},
): GatewayProcess {
  const base: Record<string, string> = { PATH: process.env.PATH ?? '' };
  if (options.inheritPath === false) delete base.PATH;
  const proc = spawn(process.execPath, ['dist/src/main.js'], {
    env: { ...base, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  proc.stderr!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((resolve) => proc.on('exit', (code) => resolve(code)));
  return {
    url: `http://127.0.0.1:${env.PORT}`,
    proc,
    output: () => out,
    exited,
    waitForOutput: async (pattern, timeoutMs = 30_000) => {
      const deadline = Date.now() + timeoutMs;
      while (!pattern.test(out)) {
        if (proc.exitCode !== null)
          throw new Error(`gateway exited (${proc.exitCode}) before printing ${pattern}:\n${out}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}:\n${out}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
    stop: async () => {
      if (proc.exitCode === null) {
        proc.kill('SIGKILL');
        await exited;
      }
    },
  };
}

export async function getJson(
  url: string,
  init?: RequestInit,
): Promise<{ status: number; body: any; headers: Headers }> {
  const res = await fetch(url, init);
  const text = await res.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // not JSON: keep the text
  }
  return { status: res.status, body, headers: res.headers };
}
