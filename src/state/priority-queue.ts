import { AtomicStore, type AtomicScript } from './atomic-store.js';
import { flowOf, MAX_TAG, quantumOf, REBASE_AT } from './domain/fair-share.js';
import type { LocalDb } from './local-db.js';

export { flowOf };

export interface QueueJob<T = unknown> {
  id: string;
  /** 1 = first served. Within one priority, first in first out. */
  priority: number;
  data: T;
  enqueuedAt: number;
}

/**
 * Waiting requests, ordered by priority then fair-share start tag, shared by every instance in
 * distributed mode.
 *
 * Floodgate's own layout, under Floodgate's prefix (the AtomicStore's), one hash tag per queue:
 *   fq:{q}:wait  sorted set   member = job id, score = priority · 2³² + start tag (domain/fair-share.ts)
 *   fq:{q}:jobs  hash         job id → job record (JSON: priority, enqueuedAt, expiresAt, data)
 *   fq:{q}:vt    hash         fair-share tags: `v` = virtual clock, one finish tag per flow (team)
 *   fq:{q}:seq   string       (no longer written: the arrival sequence before fair share)
 * Within one flow, tags grow with arrival: first in first out per team.
 * Every change is one atomic script over both structures (the same script in process, over the
 * LocalDb of the in-process AtomicStore), so a job is in the waiting set exactly when its record
 * exists, and whoever removes it from the set owns it. Admission scripts read and pop the same keys
 * (`queueKeys`, QUEUE_GATE), in the same atomic step as the key selection.
 */
export abstract class PriorityQueue {
  /**
   * `flow`: the fair-share flow (flowOf(team)), default the no-team flow; `weight` its weight (1..1000,
   * default 1). Resolves to the job's start tag.
   */
  abstract add<T>(
    queue: string,
    job: { id: string; priority: number; data: T; expiresAt?: number; flow?: string; weight?: number },
  ): Promise<number>;
  /**
   * Aging: moves a waiting job up one priority level, keeping its start tag. False when it was
   * already taken (or gone), or already urgent.
   */
  abstract promote(queue: string, id: string): Promise<boolean>;
  /** Removes a waiting job; false when it was already taken (or never there). */
  abstract remove(queue: string, id: string): Promise<boolean>;
  /** The first job (highest priority, then oldest), removed from the queue; null when none waits. */
  abstract take<T>(queue: string): Promise<QueueJob<T> | null>;
  /** Waiting jobs per priority, for the given priorities. */
  abstract counts(queue: string, priorities: readonly number[]): Promise<Record<number, number>>;
  abstract close(): Promise<void>;
}

/** Score of a waiting job: priority · 2³² + its fair-share start tag (< 2³²). */
export const PRIORITY_SCORE_FACTOR = 0x100000000;

const QUEUE_NAME = /^[A-Za-z0-9_.-]{1,100}$/;
function checkName(queue: string): void {
  if (!QUEUE_NAME.test(queue)) throw new Error(`invalid queue name ${JSON.stringify(queue)}`);
}

/**
 * The AtomicStore keys (logical, unprefixed) of a queue: [waiting set, job records, sequence, tags].
 * Every script that pops a job writes the tags (the virtual clock) and takes their key in KEYS.
 */
export function queueKeys(queue: string): [wait: string, jobs: string, seq: string, tags: string] {
  checkName(queue);
  const base = `fq:{${queue}}`;
  return [`${base}:wait`, `${base}:jobs`, `${base}:seq`, `${base}:vt`];
}

/** How long a queue's tags outlive its last enqueue (they are forgotten anyway when it empties). */
export const TAGS_TTL_MS = 3_600_000;

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
 * The popped job's start tag becomes the queue's virtual clock (`v` in fq:{q}:vt, fair-share.ts).
 */
export const POP_LUA = `
local function fq_pop(wk, jk, tk, now)
  for _ = 1, 64 do
    local head = redis.call('ZRANGE', wk, 0, 0, 'WITHSCORES')
    if #head == 0 then return nil end
    local id = head[1]
    redis.call('ZREM', wk, id)
    local rec = redis.call('HGET', jk, id)
    redis.call('HDEL', jk, id)
    if rec then
      local x = tonumber(string.match(rec, '"x":(%d+)') or '0') or 0
      if x == 0 or x > now then
        redis.call('HSET', tk, 'v', tonumber(head[2]) % ${PRIORITY_SCORE_FACTOR})
        return id .. '\\n' .. rec
      end
    end
  end
  return nil
end
`;

export function localPop(db: LocalDb, wk: string, jk: string, tk: string, now: number): string | null {
  for (let i = 0; i < 64; i++) {
    const head = db.zrange(wk, 0, 0)[0];
    if (!head) return null;
    db.zrem(wk, head.member);
    const rec = db.hget(jk, head.member);
    db.hdel(jk, head.member);
    if (rec !== null) {
      const x = Number(/"x":(\d+)/.exec(rec)?.[1] ?? '0') || 0;
      if (x === 0 || x > now) {
        db.hset(tk, { v: head.score % PRIORITY_SCORE_FACTOR });
        return `${head.member}\n${rec}`;
      }
    }
  }
  return null;
}

/**
 * KEYS: wait, jobs, tags. ARGV: id, priority, record, flow, quantum. → the job's start tag.
 * An empty queue forgets its tags first (fairness is among backlogged flows); a virtual clock past
 * REBASE_AT shifts every tag down by it first (a band holds tags below 2³²).
 */
const addScript: AtomicScript<number> = {
  name: 'queue-add',
  lua: `
local F = ${PRIORITY_SCORE_FACTOR}
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('DEL', KEYS[3]) end
local v = tonumber(redis.call('HGET', KEYS[3], 'v') or '0')
if v >= ${REBASE_AT} then
  local all = redis.call('ZRANGE', KEYS[1], 0, -1, 'WITHSCORES')
  for i = 1, #all, 2 do
    local sc = tonumber(all[i + 1])
    local band = math.floor(sc / F)
    redis.call('ZADD', KEYS[1], band * F + math.max(0, sc - band * F - v), all[i])
  end
  local tags = redis.call('HGETALL', KEYS[3])
  for i = 1, #tags, 2 do
    redis.call('HSET', KEYS[3], tags[i], math.max(0, tonumber(tags[i + 1]) - v))
  end
  v = 0
end
local s = math.min(${MAX_TAG}, math.max(v, tonumber(redis.call('HGET', KEYS[3], ARGV[4]) or '0')))
redis.call('HSET', KEYS[3], ARGV[4], s + tonumber(ARGV[5]))
redis.call('PEXPIRE', KEYS[3], ${TAGS_TTL_MS})
redis.call('ZADD', KEYS[1], tonumber(ARGV[2]) * F + s, ARGV[1])
redis.call('HSET', KEYS[2], ARGV[1], ARGV[3])
return s
`,
  local(db, keys, args) {
    const [wk, jk, tk] = keys as [string, string, string];
    const F = PRIORITY_SCORE_FACTOR;
    if (db.zcard(wk) === 0) db.del(tk);
    let v = Number(db.hget(tk, 'v') ?? '0');
    if (v >= REBASE_AT) {
      for (const { score, member } of db.zrange(wk, 0, -1)) {
        const band = Math.floor(score / F);
        db.zadd(wk, band * F + Math.max(0, score - band * F - v), member);
      }
      for (const [field, value] of Object.entries(db.hgetall(tk)))
        db.hset(tk, { [field]: Math.max(0, Number(value) - v) });
      v = 0;
    }
    const s = Math.min(MAX_TAG, Math.max(v, Number(db.hget(tk, args[3]!) ?? '0')));
    db.hset(tk, { [args[3]!]: s + Number(args[4]) });
    db.pexpire(tk, TAGS_TTL_MS);
    db.zadd(wk, Number(args[1]) * F + s, args[0]!);
    db.hset(jk, { [args[0]!]: args[2]! });
    return s;
  },
};

/**
 * KEYS: wait, jobs. ARGV: id. → 1 moved up one level (its tag kept), 0 gone or already level 1.
 * The record's priority (its first field) follows.
 */
const promoteScript: AtomicScript<number> = {
  name: 'queue-promote',
  lua: `
local sc = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not sc then return 0 end
sc = tonumber(sc)
if sc < 2 * ${PRIORITY_SCORE_FACTOR} then return 0 end
redis.call('ZADD', KEYS[1], sc - ${PRIORITY_SCORE_FACTOR}, ARGV[1])
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if rec then
  local p = tonumber(string.match(rec, '^{"p":(%d+)'))
  if p then redis.call('HSET', KEYS[2], ARGV[1], '{"p":' .. (p - 1) .. string.sub(rec, #('{"p":' .. p) + 1)) end
end
return 1
`,
  local(db, keys, args) {
    const [wk, jk] = keys as [string, string];
    const sc = db.zscore(wk, args[0]!);
    if (sc === null || sc < 2 * PRIORITY_SCORE_FACTOR) return 0;
    db.zadd(wk, sc - PRIORITY_SCORE_FACTOR, args[0]!);
    const rec = db.hget(jk, args[0]!);
    const p = rec === null ? null : /^\{"p":(\d+)/.exec(rec)?.[1];
    if (rec !== null && p !== undefined && p !== null)
      db.hset(jk, { [args[0]!]: `{"p":${Number(p) - 1}${rec.slice(`{"p":${p}`.length)}` });
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

/** KEYS: wait, jobs, tags. → "id\nrecord" or nil. */
const takeScript: AtomicScript<string | null> = {
  name: 'queue-take',
  lua: `${POP_LUA}
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return fq_pop(KEYS[1], KEYS[2], KEYS[3], now)
`,
  local(db, keys, _args, now) {
    return localPop(db, keys[0]!, keys[1]!, keys[2]!, now);
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
    job: { id: string; priority: number; data: T; expiresAt?: number; flow?: string; weight?: number },
  ): Promise<number> {
    if (!Number.isInteger(job.priority) || job.priority < 1)
      throw new Error('priority must be an integer ≥ 1');
    const [wait, jobs, , tags] = queueKeys(queue);
    const record: JobRecord<T> = {
      p: job.priority,
      t: Date.now(),
      x: Math.max(0, Math.floor(job.expiresAt ?? 0)),
      d: job.data,
    };
    const s = await this.store.run(
      addScript,
      [wait, jobs, tags],
      [job.id, job.priority, JSON.stringify(record), job.flow || '-', quantumOf(job.weight ?? 1)],
    );
    return Number(s);
  }

  async promote(queue: string, id: string): Promise<boolean> {
    const [wait, jobs] = queueKeys(queue);
    return (await this.store.run(promoteScript, [wait, jobs], [id])) === 1;
  }

  async remove(queue: string, id: string): Promise<boolean> {
    const [wait, jobs] = queueKeys(queue);
    return (await this.store.run(removeScript, [wait, jobs], [id])) === 1;
  }

  async take<T>(queue: string): Promise<QueueJob<T> | null> {
    const [wait, jobs, , tags] = queueKeys(queue);
    const raw = await this.store.run(takeScript, [wait, jobs, tags], []);
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
