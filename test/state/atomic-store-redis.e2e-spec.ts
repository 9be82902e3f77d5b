import { Redis } from 'ioredis';
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { RedisLiveness, RedisUnavailableError } from '../../src/redis/redis-liveness.js';
import { RedisConnections } from '../../src/redis/redis.module.js';
import { RedisAtomicStore, type AtomicScript, type ScriptValue } from '../../src/state/atomic-store.js';
import { OwnRedis } from '../support/redis-server.js';

/**
 * RedisAtomicStore on one Redis builds its EVALSHA command itself (src/state/atomic-store.ts,
 * evalshaCommand) instead of going through ioredis' generated `evalsha`: what reaches Redis, what
 * comes back and how failures look must stay exactly what `client.evalsha(...)` gives — on the
 * gateway's own connections (the store's `command` connection: write coalescing, 1 s command
 * timeout; the limiter's `watched` one, judged by RedisLiveness). A private redis-server, so the test
 * may MONITOR, flush scripts and freeze it.
 */
const echo: AtomicScript = {
  name: 'echo',
  lua: `
    redis.call('SET', KEYS[1], ARGV[1])
    return {#KEYS, KEYS[1], KEYS[2], ARGV, false, 9007199254740993, {ARGV[2], {ARGV[3]}}, redis.status_reply('OK')}
  `,
  local: () => null,
};
const failing: AtomicScript = {
  name: 'failing',
  lua: `return redis.error_reply('FGTEST refused ' .. ARGV[1])`,
  local: () => null,
};
/** MONITOR prints arguments escaped (bytes ≥ 0x80 as \\xHH, \\r, \\n): undone. */
const unrepr = (s: string): string =>
  Buffer.from(
    s.replace(/\\(x[0-9a-f]{2}|.)/g, (_m, e: string) =>
      e[0] === 'x' && e.length === 3
        ? String.fromCharCode(parseInt(e.slice(1), 16))
        : (({ n: '\n', r: '\r', t: '\t' } as Record<string, string>)[e] ?? e),
    ),
    'latin1',
  ).toString('utf8');
const sha = (lua: string): string => createHash('sha1').update(lua).digest('hex');
const ARGS: (string | number)[] = [7, 'plain', 'ünïcødé ✓ 𝄞', 0.5, -12, '', 'a\r\nb'];

describe('RedisAtomicStore on one Redis: the same EVALSHA as ioredis evalsha', () => {
  let redis: OwnRedis;
  let conns: RedisConnections;
  let store: RedisAtomicStore;
  let plain: Redis;

  beforeAll(async () => {
    redis = await OwnRedis.start();
    conns = new RedisConnections({ url: redis.url }, 'fgas');
    plain = new Redis(redis.url);
    plain.on('error', () => undefined);
    await Promise.all(
      [conns.command, plain].map((c) =>
        c.status === 'ready' ? Promise.resolve() : new Promise<void>((r) => c.once('ready', () => r())),
      ),
    );
    store = new RedisAtomicStore(conns.command, 'fgas');
  });
  afterAll(async () => {
    await conns?.onApplicationShutdown();
    plain?.disconnect();
    await redis?.stop();
  });

  it('writes the command evalsha writes and decodes the reply as it does (nested arrays, nil, integers, status)', async () => {
    await plain.script('LOAD', echo.lua);
    const base = new Redis(redis.url);
    const mon = await base.monitor();
    const seen: string[][] = [];
    mon.on('monitor', (_time: string, args: string[]) => seen.push(args.map((a) => unrepr(String(a)))));
    try {
      const ours = await store.run(echo, ['k:{1}', 'k2'], ARGS);
      const theirs = await plain.evalsha(sha(echo.lua), 2, 'fgas:k:{1}', 'fgas:k2', ...ARGS);
      expect(ours).toEqual(theirs);
      expect(ours).toEqual([
        2,
        'fgas:k:{1}',
        'fgas:k2',
        ARGS.map(String),
        null,
        9007199254740992, // Lua numbers are doubles: Redis sends the rounded integer
        ['plain', ['ünïcødé ✓ 𝄞']],
        'OK',
      ]);
      await new Promise((r) => setTimeout(r, 100));
      const evalshas = seen.filter((a) => a[0]?.toLowerCase() === 'evalsha');
      expect(evalshas).toHaveLength(2);
      expect(evalshas[0]).toEqual(evalshas[1]);
      expect(evalshas[0]).toEqual([
        'evalsha',
        sha(echo.lua),
        '2',
        'fgas:k:{1}',
        'fgas:k2',
        ...ARGS.map(String),
      ]);
    } finally {
      mon.disconnect();
      base.disconnect();
    }
  });

  it('unknown to Redis (NOSCRIPT): runs it by EVAL once, then by EVALSHA again', async () => {
    await plain.script('FLUSH');
    expect(await store.run(echo, ['n:1', 'n:2'], ARGS)).toEqual(
      await plain.evalsha(sha(echo.lua), 2, 'fgas:n:1', 'fgas:n:2', ...ARGS),
    );
    const stats = async (): Promise<string> => plain.info('commandstats');
    const before = await stats();
    await store.run(echo, ['n:1', 'n:2'], ARGS);
    const count = (s: string, cmd: string): number =>
      Number(new RegExp(`cmdstat_${cmd}:calls=(\\d+)`).exec(s)?.[1] ?? 0);
    const after = await stats();
    expect(count(after, 'evalsha') - count(before, 'evalsha')).toBe(1);
    expect(count(after, 'eval') - count(before, 'eval')).toBe(0);
  });

  it('an error reply rejects as evalsha does (ReplyError, same message), which RedisLiveness calls error_reply', async () => {
    const ours = await store.run(failing, ['e'], ['x']).then(
      () => null,
      (e: unknown) => e,
    );
    await plain.script('LOAD', failing.lua);
    const theirs = await plain.evalsha(sha(failing.lua), 1, 'fgas:e', 'x').then(
      () => null,
      (e: unknown) => e,
    );
    expect(ours).toBeInstanceOf(Error);
    expect((ours as Error).name).toBe('ReplyError');
    expect((ours as Error).message).toBe((theirs as Error).message);
    expect((ours as Error).message).toBe('FGTEST refused x');

    const { client } = conns.watched('test-watched', 500);
    await new Promise((r) => (client.status === 'ready' ? r(null) : client.once('ready', r)));
    const liveness = new RedisLiveness(client as Redis, 500);
    const watchedStore = new RedisAtomicStore(client, 'fgas');
    const judged = await liveness.wait(watchedStore.run(failing, ['e'], ['y']), performance.now()).then(
      () => null,
      (e: unknown) => e,
    );
    expect(judged).toBeInstanceOf(RedisUnavailableError);
    expect((judged as RedisUnavailableError).kind).toBe('error_reply');
  });

  it('a frozen Redis: the command connection gives up after its 1 s command timeout, as before', async () => {
    await store.run(echo, ['f:1', 'f:2'], ARGS); // loaded
    redis.freeze();
    try {
      const t0 = performance.now();
      const err = await store.run(echo, ['f:1', 'f:2'], ARGS).then(
        () => null,
        (e: unknown) => e as Error,
      );
      const ms = performance.now() - t0;
      expect(err?.message).toBe('Command timed out');
      expect(ms).toBeGreaterThanOrEqual(900);
    } finally {
      redis.thaw();
    }
    // answers again once Redis does
    await expect(store.run(echo, ['f:1', 'f:2'], [1])).resolves.toBeDefined();
  });

  it('Redis killed: refused at once without an offline queue, and works again after the restart', async () => {
    await redis.kill();
    await new Promise((r) => setTimeout(r, 100));
    const err = await store.run(echo, ['d:1', 'd:2'], ARGS).then(
      () => null,
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/Stream isn't writeable|Connection is closed|max retries/i);
    await redis.restart();
    const c = conns.command;
    for (let i = 0; i < 100 && c.status !== 'ready'; i++) await new Promise((r) => setTimeout(r, 100));
    // an empty Redis: NOSCRIPT, then EVAL
    const reply: ScriptValue = await store.run(echo, ['d:1', 'd:2'], ['z', 'y', 'x']);
    expect((reply as ScriptValue[])[3]).toEqual(['z', 'y', 'x']);
  });
});
