import { createHash } from 'node:crypto';
import { Cluster, Command, type Redis } from 'ioredis';
import { LocalDb } from './local-db.js';

/** What a script may return: Redis turns Lua numbers into integers, so fractions travel as strings. */
export type ScriptValue = number | string | null | ScriptValue[];

/**
 * One atomic read-modify-write, written twice: as Redis Lua (distributed mode) and as a synchronous
 * function over LocalDb (embedded mode). The contract tests of each feature run both halves against
 * the same cases, which is what keeps them equal.
 *
 * Rules for both halves: keys come only from KEYS/`keys`; the clock is Redis `TIME` in Lua and
 * `nowMs` locally (one clock for every instance); return integers or strings, never floats.
 */
export interface AtomicScript<R extends ScriptValue = ScriptValue> {
  readonly name: string;
  readonly lua: string;
  local(db: LocalDb, keys: string[], args: string[], nowMs: number): R;
}

export abstract class AtomicStore {
  abstract readonly kind: 'memory' | 'redis';
  /**
   * True on a Redis Cluster: a script may only touch keys of one hash slot (one hash tag), so work
   * over several slots runs as separate steps (docs/scaling.md, "Redis Cluster").
   */
  abstract readonly slotted: boolean;
  /** Runs the script atomically. Distributed: one round trip (EVALSHA, EVAL once on NOSCRIPT). */
  abstract run<R extends ScriptValue>(
    script: AtomicScript<R>,
    keys: string[],
    args: (string | number)[],
  ): Promise<R>;
}

export class MemoryAtomicStore extends AtomicStore {
  readonly kind = 'memory' as const;
  readonly slotted = false;
  readonly db = new LocalDb();

  constructor() {
    super();
    this.db.startSweeping();
  }

  run<R extends ScriptValue>(script: AtomicScript<R>, keys: string[], args: (string | number)[]): Promise<R> {
    const now = Date.now();
    this.db.now = now;
    try {
      return Promise.resolve(script.local(this.db, keys, asStrings(args), now));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }

  close(): void {
    this.db.stopSweeping();
  }
}

/** The arguments as strings (Redis' ARGV): the array itself when they already are (no copy). */
function asStrings(args: (string | number)[]): string[] {
  for (let i = 0; i < args.length; i++) if (typeof args[i] !== 'string') return args.map(String);
  return args as string[];
}

export class RedisAtomicStore extends AtomicStore {
  readonly kind = 'redis' as const;
  readonly slotted: boolean;
  private readonly shas = new Map<string, string>();
  /**
   * `prefix:key` per logical key, built once: a relayed request's admission sends ~25 keys, the same
   * few strings for every request of a client and provider. Bounded (cleared when full).
   */
  private readonly prefixed = new Map<string, string>();

  constructor(
    /** One Redis, or a Redis Cluster (every script's keys share one slot). */
    private readonly client: Redis | Cluster,
    private readonly prefix: string,
  ) {
    super();
    this.slotted = client instanceof Cluster;
  }

  private sha(script: AtomicScript): string {
    let sha = this.shas.get(script.lua);
    if (!sha) {
      sha = createHash('sha1').update(script.lua).digest('hex');
      this.shas.set(script.lua, sha);
    }
    return sha;
  }

  async run<R extends ScriptValue>(
    script: AtomicScript<R>,
    keys: string[],
    args: (string | number)[],
  ): Promise<R> {
    const client = this.client;
    try {
      if (client instanceof Cluster) {
        const fullKeys = keys.map((k) => `${this.prefix}:${k}`);
        return (await client.evalsha(this.sha(script), fullKeys.length, ...fullKeys, ...args)) as R;
      }
      return (await client.sendCommand(
        evalshaCommand(this.sha(script), this.prefixed, this.prefix, keys, args),
      )) as R;
    } catch (err) {
      if (!(err instanceof Error) || !err.message.startsWith('NOSCRIPT')) throw err;
      const fullKeys = keys.map((k) => `${this.prefix}:${k}`);
      return (await client.eval(script.lua, fullKeys.length, ...fullKeys, ...args)) as R;
    }
  }
}

const NO_ARGS: string[] = [];
const UTF8_REPLY = { replyEncoding: 'utf8' } as const;

/**
 * `EVALSHA sha n prefix:key… arg…` as the ioredis Command that `client.evalsha(sha, n, ...keys,
 * ...args)` builds — same name, arguments, reply decoding (utf8 strings) and path through
 * `sendCommand` (command timeout, offline handling, reconnection, write coalescing, liveness) — but
 * with its argument list built here in one pass, already as strings: the generated `evalsha` wrapper
 * copies the spread arguments, and the Command constructor flattens them and converts each again
 * (about a third of the client's CPU per script call on a relayed request's admission, 24 keys and
 * 62 arguments). One Redis only: a Cluster client computes the slot from the arguments as given.
 */
const PREFIXED_MAX = 20_000;

function evalshaCommand(
  sha: string,
  prefixed: Map<string, string>,
  prefix: string,
  keys: string[],
  args: (string | number)[],
): Command {
  const n = keys.length;
  const argv = new Array<string>(2 + n + args.length);
  argv[0] = sha;
  argv[1] = String(n);
  for (let i = 0; i < n; i++) {
    const key = keys[i]!;
    let full = prefixed.get(key);
    if (full === undefined) {
      if (prefixed.size >= PREFIXED_MAX) prefixed.clear();
      full = `${prefix}:${key}`;
      prefixed.set(key, full);
    }
    argv[2 + i] = full;
  }
  // ioredis' toArg: numbers as String(n); null/undefined (never typed here) as ''
  for (let i = 0; i < args.length; i++) argv[2 + n + i] = String(args[i] ?? '');
  const command = new Command('evalsha', NO_ARGS, UTF8_REPLY);
  command.args = argv;
  return command;
}
