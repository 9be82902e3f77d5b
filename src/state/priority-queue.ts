import { AtomicStore, type AtomicScript } from './atomic-store.js';
import type { LocalDb } from './local-db.js';

export interface QueueJob<T = unknown> {
  id: string;
  /** 1 = first served. Within one priority, first in first out. */
  priority: number;
  data: T;
  enqueuedAt: number;
}

/**
 * Waiting requests, ordered by priority then arrival, shared by every instance in distributed mode.
 *
 * Floodgate's own layout, under Floodgate's prefix (the AtomicStore's), one hash tag per queue:
 *   fq:{q}:wait  sorted set   member = job id, score = priority · 2³² + arrival sequence
 *   fq:{q}:jobs  hash         job id → job record (JSON: priority, enqueuedAt, expiresAt, data)
 *   fq:{q}:seq   string       arrival sequence
 * Every change is one atomic script over both structures (the same script in process, over the
 * LocalDb of the in-process AtomicStore), so a job is in the waiting set exactly when its record
 * exists, and whoever removes it from the set owns it. Admission scripts read and pop the same keys
 * (`queueKeys`, QUEUE_GATE), in the same atomic step as the key selection.
 */
export abstract class PriorityQueue {
  abstract add<T>(
    queue: string,
    job: { id: string; priority: number; data: T; expiresAt?: number },
  ): Promise<void>;
  /** Removes a waiting job; false when it was already taken (or never there). */
  abstract remove(queue: string, id: string): Promise<boolean>;
  /** The first job (highest priority, then oldest), removed from the queue; null when none waits. */
  abstract take<T>(queue: string): Promise<QueueJob<T> | null>;
  /** Waiting jobs per priority, for the given priorities. */
  abstract counts(queue: string, priorities: readonly number[]): Promise<Record<number, number>>;
  abstract close(): Promise<void>;
}

/** Score of a waiting job: priority · 2³² + arrival sequence (mod 2³²). */
export const PRIORITY_SCORE_FACTOR = 0x100000000;

const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
function checkName(queue: string): void {
  if (!QUEUE_NAME.test(queue)) throw new Error(`invalid queue name ${JSON.stringify(queue)}`);
}

/** The AtomicStore keys (logical, unprefixed) of a queue: [waiting set, job records, sequence]. */
export function queueKeys(queue: string): [wait: string, jobs: string, seq: string] {
  checkName(queue);
  const base = `fq:{${queue}}`;
  return [`${base}:wait`, `${base}:jobs`, `${base}:seq`];
}

/** A job record as stored in the jobs hash (short field names: one per waiting request). */
export interface JobRecord<T = unknown> {
  /** priority */
  p: number;
  /** enqueued at (ms) */
  t: number;
  /** expires at (ms): a dispatcher drops it instead of granting it (its waiter has given up). 0 = never. */
  x: number;
  d: T;
}

/** "jobId\nrecord": how scripts hand a popped job back. */
export function decodePopped<T>(raw: string): QueueJob<T> | null {
  const nl = raw.indexOf('\n');
  if (nl < 0) return null;
  try {
    const record = JSON.parse(raw.slice(nl + 1)) as JobRecord<T>;
    return { id: raw.slice(0, nl), priority: record.p, data: record.d, enqueuedAt: record.t };
  } catch {
    return null;
  }
}

/**
 * Lua and LocalDb halves of "pop the first live job" (records past their expiry are dropped on the
 * way, at most 64 per call). Shared by `take` and the dispatch gate. Returns "id\nrecord" or nil.
 */
export const POP_LUA = `
local function fq_pop(wk, jk, now)
  for _ = 1, 64 do
    local head = redis.call('ZRANGE', wk, 0, 0)
    if #head == 0 then return nil end
    local id = head[1]
    redis.call('ZREM', wk, id)
    local rec = redis.call('HGET', jk, id)
    redis.call('HDEL', jk, id)
    if rec then
      local x = tonumber(string.match(rec, '"x":(%d+)') or '0') or 0
      if x == 0 or x > now then return id .. '\\n' .. rec end
    end
  end
  return nil
end
`;

export function localPop(db: LocalDb, wk: string, jk: string, now: number): string | null {
  for (let i = 0; i < 64; i++) {
    const head = db.zrange(wk, 0, 0)[0];
    if (!head) return null;
    db.zrem(wk, head.member);
    const rec = db.hget(jk, head.member);
    db.hdel(jk, head.member);
    if (rec !== null) {
      const x = Number(/"x":(\d+)/.exec(rec)?.[1] ?? '0') || 0;
      if (x === 0 || x > now) return `${head.member}\n${rec}`;
    }
  }
  return null;
}

/** KEYS: wait, jobs, seq. ARGV: id, priority, record. → 1 */
const addScript: AtomicScript<number> = {
  name: 'queue-add',
  lua: `
local seq = redis.call('INCR', KEYS[3]) % ${PRIORITY_SCORE_FACTOR}
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) * ${PRIORITY_SCORE_FACTOR} + seq, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return 1
`,
  local(db, keys, args) {
    const seq = db.incrby(keys[2]!, 1) % PRIORITY_SCORE_FACTOR;
    db.zadd(keys[0]!, Number(args[1]) * PRIORITY_SCORE_FACTOR + seq, args[0]!);
    db.hset(keys[1]!, { [args[0]!]: args[2]! });
    return 1;
  },
};

/** KEYS: wait, jobs. ARGV: id. → 1 removed (the caller owns the job), 0 already gone. */
const removeScript: AtomicScript<number> = {
  name: 'queue-remove',
  lua: `
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return 1
`,
  local(db, keys, args) {
    if (db.zrem(keys[0]!, args[0]!) === 0) return 0;
    db.hdel(keys[1]!, args[0]!);
    return 1;
  },
};

/** KEYS: wait, jobs. → "id\nrecord" or nil. */
const takeScript: AtomicScript<string | null> = {
  name: 'queue-take',
  lua: `${POP_LUA}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return fq_pop(KEYS[1], KEYS[2], now)
`,
  local(db, keys, _args, now) {
    return localPop(db, keys[0]!, keys[1]!, now);
  },
};

/** KEYS: wait. ARGV: priorities. → count per priority, in order. */
const countsScript: AtomicScript<number[]> = {
  name: 'queue-counts',
  lua: `
local out = {}
for i = 1, #ARGV do
  local p = tonumber(ARGV[i])
  out[i] = redis.call('ZCOUNT', KEYS[1], p * ${PRIORITY_SCORE_FACTOR}, (p + 1) * ${PRIORITY_SCORE_FACTOR} - 1)
end
return out
`,
  local(db, keys, args) {
    return args.map((a) => {
      const p = Number(a);
      return db.zcount(keys[0]!, p * PRIORITY_SCORE_FACTOR, (p + 1) * PRIORITY_SCORE_FACTOR - 1);
    });
  },
};

/**
 * The queue over an AtomicStore: Redis scripts in distributed mode, the same scripts' LocalDb halves
 * in process. One implementation, so both modes keep one semantics.
 */
export class StorePriorityQueue extends PriorityQueue {
  constructor(private readonly store: AtomicStore) {
    super();
  }

  async add<T>(
    queue: string,
    job: { id: string; priority: number; data: T; expiresAt?: number },
  ): Promise<void> {
    if (!Number.isInteger(job.priority) || job.priority < 1)
      throw new Error('priority must be an integer ≥ 1');
    const [wait, jobs, seq] = queueKeys(queue);
    const record: JobRecord<T> = {
      p: job.priority,
      t: Date.now(),
      x: Math.max(0, Math.floor(job.expiresAt ?? 0)),
      d: job.data,
    };
    await this.store.run(addScript, [wait, jobs, seq], [job.id, job.priority, JSON.stringify(record)]);
  }

  async remove(queue: string, id: string): Promise<boolean> {
    const [wait, jobs] = queueKeys(queue);
    return (await this.store.run(removeScript, [wait, jobs], [id])) === 1;
  }

  async take<T>(queue: string): Promise<QueueJob<T> | null> {
    const [wait, jobs] = queueKeys(queue);
    const raw = await this.store.run(takeScript, [wait, jobs], []);
    return typeof raw === 'string' ? decodePopped<T>(raw) : null;
  }

  async counts(queue: string, priorities: readonly number[]): Promise<Record<number, number>> {
    const [wait] = queueKeys(queue);
    const counts = await this.store.run(countsScript, [wait], [...priorities]);
    return Object.fromEntries(priorities.map((p, i) => [p, Number(counts[i] ?? 0)]));
  }

  close(): Promise<void> {
    return Promise.resolve();
  }
}
