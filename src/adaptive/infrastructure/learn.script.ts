import { LEARNED_LIMIT_FIELD } from '../../key-pool/key-pool.types.js';
import type { AtomicScript } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { appendHistory, decreaseFor429, increaseDecision } from '../domain/aimd.js';
import type { Upstream429Type } from '../domain/classify-429.js';
import { readLua } from '../../state/lua-file.js';

/**
 * adaptive-learn: one atomic step on an upstream key's learned limit (four operations: 429, inc,
 * reset, load). Distributed mode runs learn.lua in Redis; embedded mode runs `localLearn` below,
 * whose decisions are the pure rules of aimd.ts. The rule needs the shared state (limit, hold,
 * boundary, counters) that other instances change concurrently, so it runs inside the atomic step
 * (one round trip per decision) and the Lua copy of it is held equal to aimd.ts by
 * test/adaptive/learn-equivalence.e2e-spec.ts (a generated grid of states × events through both).
 * Callers build ARGV with `encodeLearn` and read replies with `decodeLearn`.
 */

export const HISTORY_MAX = 20;
/** Adaptive's per-key hash outlives idle periods (Postgres is the durable copy). */
export const KEY_STATE_TTL_MS = 30 * 86_400_000;

export type LearnOp =
  | {
      op: '429';
      type: Upstream429Type;
      inFlight: number;
      /** false: a fixed key (its 429s are counted, its limit is never adjusted). */
      learned: boolean;
      initial: number;
      decreasePermille: number;
      unknownPermille: number;
      holdMs: number;
      minLimit: number;
    }
  | {
      op: 'inc';
      /** Compare-and-set: the limit the instance judged. */
      expected: number;
      reason: 'high_utilisation' | 'probe';
      inFlight: number;
      initial: number;
      maxLimit: number;
      probeIntervalMs: number;
      /** 1000 = no slow start. */
      slowStartPermille: number;
    }
  | { op: 'reset' }
  | {
      op: 'load';
      version: number;
      learned: number | null;
      c: number;
      r: number;
      t: number;
      u: number;
      l4: number | null;
      lt: string | null;
      lc: number | null;
      bd: number | null;
      lp: number | null;
      history: string;
    };

/** ARGV of learn.lua, in its order. */
export function encodeLearn(o: LearnOp): (string | number)[] {
  const opt = (v: number | string | null) => (v === null ? '' : v);
  switch (o.op) {
    case '429':
      return [
        '429',
        o.type,
        o.inFlight,
        o.learned ? 1 : 0,
        o.initial,
        o.decreasePermille,
        o.unknownPermille,
        o.holdMs,
        o.minLimit,
      ];
    case 'inc':
      return [
        'inc',
        o.expected,
        o.reason,
        o.inFlight,
        o.initial,
        o.maxLimit,
        o.probeIntervalMs,
        o.slowStartPermille,
      ];
    case 'reset':
      return ['reset'];
    case 'load':
      return [
        'load',
        o.version,
        opt(o.learned),
        o.c,
        o.r,
        o.t,
        o.u,
        opt(o.l4),
        opt(o.lt),
        opt(o.lc),
        opt(o.bd),
        opt(o.lp),
        o.history,
      ];
  }
}

/** The raw reply: [changed 0|1, old, new, version, code]. */
export type LearnResult = [number, number, number, number, string];

export interface LearnReply {
  changed: boolean;
  /** The limit before (learned or initial); equal to `next` when nothing changed. */
  old: number;
  next: number;
  /** The key state's version after the step (ms clock that only grows). */
  version: number;
  /** The adjustment reason (concurrency_429, unknown_429, high_utilisation, slow_start, probe), or why nothing changed (stale, hold, max, boundary, quiet_period, no_change, fixed, newer), or reset / loaded. */
  code: string;
}

export function decodeLearn(r: LearnResult): LearnReply {
  return {
    changed: r[0] === 1,
    old: Number(r[1]),
    next: Number(r[2]),
    version: Number(r[3]),
    code: String(r[4]),
  };
}

/** learn.lua's text (the body of `fg_learn(KEYS, ARGV, NOW)` when composed; see report.script.ts). */
export const LUA_LEARN = readLua(new URL('./learn.lua', import.meta.url), {
  CL: LEARNED_LIMIT_FIELD,
  TTL_MS: KEY_STATE_TTL_MS,
  HISTORY_MAX,
});

function n(v: string | null | undefined, d: number): number {
  if (v === null || v === undefined || v === '') return d;
  const x = Number(v);
  return Number.isNaN(x) ? d : x;
}

export function localLearn(db: LocalDb, keys: string[], args: string[], now: number): LearnResult {
  const [kh, ah] = keys as [string, string];
  const op = args[0];
  const bump = (): number => {
    let v = n(db.hget(ah, 'v'), 0) + 1;
    if (now > v) v = now;
    db.hset(ah, { v });
    db.pexpire(ah, KEY_STATE_TTL_MS);
    return v;
  };
  const remember = (old: number, next: number, reason: string, inFlight: number) => {
    db.hset(ah, {
      h: appendHistory(db.hget(ah, 'h'), { atMs: now, old, new: next, reason, inFlight }, HISTORY_MAX),
    });
  };
  const learned = () => n(db.hget(kh, LEARNED_LIMIT_FIELD), n(db.hget(ah, 'll'), NaN));
  const setLearned = (v: number | string) => {
    db.hset(kh, { [LEARNED_LIMIT_FIELD]: v });
    db.hset(ah, { ll: v });
  };
  if (op === '429') {
    const type = args[1] as Upstream429Type;
    const inFlight = n(args[2], 0);
    const isLearned = args[3] === '1';
    const initial = n(args[4], 1);
    const field = type === 'concurrency' ? 'c' : type === 'rpm' ? 'r' : type === 'tpm' ? 't' : 'u';
    // The limit before the last slow-start step; the first push-back ends slow start and uses it.
    const good = type === 'concurrency' || type === 'unknown' ? n(db.hget(ah, 'sg'), NaN) : NaN;
    if (!Number.isNaN(good)) db.hdel(ah, 'sg');
    db.hincrby(ah, field, 1);
    db.hset(ah, { l4: now, lt: type });
    if (type === 'concurrency') {
      db.hset(ah, { lc: now });
      const bd = db.hget(ah, 'bd');
      if (bd === null || bd === '' || inFlight < Number(bd)) db.hset(ah, { bd: inFlight });
    }
    const stored = learned();
    const cur = Number.isNaN(stored) ? initial : stored;
    if (!isLearned) return [0, cur, cur, bump(), 'fixed'];
    const change = decreaseFor429(
      cur,
      type,
      inFlight,
      now < n(db.hget(ah, 'hold'), 0),
      { decreasePermille: n(args[5], 850), unknownPermille: n(args[6], 900), minLimit: n(args[8], 1) },
      Number.isNaN(good) ? null : good,
    );
    if (!change) return [0, cur, cur, bump(), 'no_change'];
    setLearned(change.limit);
    db.hset(ah, { hold: now + n(args[7], 0) });
    remember(cur, change.limit, change.reason, inFlight);
    return [1, cur, change.limit, bump(), change.reason];
  }
  if (op === 'inc') {
    const expected = n(args[1], -1);
    const reason = args[2] === 'probe' ? 'probe' : 'high_utilisation';
    const inFlight = n(args[3], 0);
    const stored = learned();
    const cur = Number.isNaN(stored) ? n(args[4], 1) : stored;
    const v = n(db.hget(ah, 'v'), 0);
    if (cur !== expected) return [0, cur, cur, v, 'stale'];
    const bd = db.hget(ah, 'bd');
    const d = increaseDecision(
      cur,
      reason,
      {
        nowMs: now,
        holdUntilMs: n(db.hget(ah, 'hold'), 0),
        boundary: bd === null || bd === '' ? null : Number(bd),
        lastConcurrency429Ms: n(db.hget(ah, 'lc'), 0),
        lastProbeMs: n(db.hget(ah, 'lp'), 0),
        pushedBack: n(db.hget(ah, 'c'), 0) > 0 || n(db.hget(ah, 'u'), 0) > 0,
      },
      { maxLimit: n(args[5], 100), probeIntervalMs: n(args[6], 300000), slowStartPermille: n(args[7], 1000) },
    );
    if (!d.ok) return [0, cur, cur, v, d.why];
    if (d.reason === 'probe') {
      db.hset(ah, { lp: now });
      db.hdel(ah, 'bd');
    }
    if (d.reason === 'slow_start') db.hset(ah, { sg: cur });
    setLearned(d.limit);
    remember(cur, d.limit, d.reason, inFlight);
    return [1, cur, d.limit, bump(), d.reason];
  }
  if (op === 'reset') {
    const v = n(db.hget(ah, 'v'), 0);
    db.hdel(kh, LEARNED_LIMIT_FIELD);
    db.del(ah);
    db.hset(ah, { v });
    return [1, 0, 0, bump(), 'reset'];
  }
  if (op === 'load') {
    const version = n(args[1], 0);
    const have = db.hget(ah, 'v');
    if (have !== null && have !== '' && Number(have) >= version) return [0, 0, 0, Number(have), 'newer'];
    db.del(ah);
    db.hset(ah, { v: version, c: n(args[3], 0), r: n(args[4], 0), t: n(args[5], 0), u: n(args[6], 0) });
    ['l4', 'lt', 'lc', 'bd', 'lp', 'h'].forEach((name, i) => {
      const value = args[7 + i];
      if (value !== undefined && value !== '') db.hset(ah, { [name]: value });
    });
    db.pexpire(ah, KEY_STATE_TTL_MS);
    if (args[2] !== '' && args[2] !== undefined) setLearned(args[2]);
    else db.hdel(kh, LEARNED_LIMIT_FIELD);
    return [1, 0, 0, version, 'loaded'];
  }
  throw new Error(`unknown op ${op}`);
}

export const learnScript: AtomicScript<LearnResult> = {
  name: 'adaptive-learn',
  lua: `local NOW = nil\n${LUA_LEARN}`,
  local: localLearn,
};
