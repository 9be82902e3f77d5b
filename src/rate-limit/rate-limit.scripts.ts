import type { AtomicScript } from '../state/atomic-store.js';
import type { LocalDb } from '../state/local-db.js';
import { readLua } from '../state/lua-file.js';

/**
 * The limiter's atomic scripts, each written twice (Redis Lua + in-process), kept equal by the
 * contract suite in test/rate-limit/scripts.e2e-spec.ts.
 *
 * Policy kinds:
 *   1 sliding window (exact): a sorted-set log, one member per admitted request (score = admission
 *     time in ms, member = a random per-request token, so simultaneous requests never collapse into
 *     one), trimmed to the last `window` ms on every call. Admit iff count + cost <= limit.
 *   2 token bucket (GCRA): one integer, the theoretical arrival time in µs. `limit` tokens per
 *     `window` ms refill, `burst` is the capacity. Admit iff tat + interval·cost − burst·interval <= now.
 *   4 sliding window of sub-buckets (a limit above SLIDING_EXACT_MAX): one hash per policy,
 *     '<bucket id>' = requests admitted in that bucket (id = floor(ms / bms), bms = ceil(window /
 *     SUB_BUCKETS)), s = their sum, lo = the lowest id that may still be present, b = bms. The
 *     count is the sum of every bucket whose id >= floor(now / bms) − SUB_BUCKETS, read as one HMGET
 *     (s, lo, b); an admission is one HINCRBY of its bucket and one of s (+ PEXPIRE and, for the
 *     first bucket, HSET lo/b once per bucket). Buckets that left the window are deleted (and taken
 *     off s) only when lo says there are some: once per bucket boundary, not per request.
 *     Error bound (test/rate-limit/sub-buckets.e2e-spec.ts): the count covers everything the exact
 *     log counts (the last `window` ms) plus what was admitted in the part of the oldest bucket that
 *     lies before now − window — less than one bucket (window / 60) of time. It never counts less
 *     than the exact log, so no `window`-long interval ever admits more than `limit`; a subject at
 *     its limit may be refused up to one bucket earlier (its retry time is up to one bucket later)
 *     than with the exact log. Retry: when enough of the oldest buckets have left the window
 *     ((id + SUB_BUCKETS + 1)·bms − now); reset: when the oldest bucket leaves.
 *   3 token budget (TPM, check only): a log of charges (member `<token>:<tokens>`) plus their running
 *     sum; refuse while the sum over the last `window` ms is >= limit. Charged by ChargeTokensScript.
 *
 * Every check a request needs is ONE run of AdmissionScript: phase 1 evaluates every policy, phase 2
 * commits only if all of them admit (a rejected request consumes nothing anywhere). Time is Redis
 * `TIME` (locally the store's `nowMs`), never an instance clock.
 */

export const KIND_SLIDING_WINDOW = 1;
export const KIND_TOKEN_BUCKET = 2;
export const KIND_TOKEN_BUDGET = 3;
export const KIND_SLIDING_BUCKETS = 4;
/**
 * A spend budget (docs/spend.md "Budgets"): per subject and period a counter (spent + reserved
 * micro-dollars) and, in the same hash slot, its reservations (`<counter>:res`, a sorted set: one
 * member `<request member>:<µ$>` per outstanding reservation, scored by its deadline on the store's
 * clock). KEYS counter, reservations; `limit` µ$, `window_ms` the ms to the period's reset (0:
 * never), `burst` the reservation's TTL (ms), `cost` this request's reservation. Every step first
 * gives back the reservations past their deadline (fg_rl_spend_sweep), then admits iff used + cost
 * <= limit; commit INCRBY cost + ZADD (now + TTL) (+ PEXPIRE window + SPEND_TTL_SLACK_MS on both).
 * Kept alive by RenewSpendScript, settled (idempotently) by SettleSpendScript / the answer's rider,
 * rolled back by ZREM + DECRBY.
 */
export const KIND_SPEND_BUDGET = 5;
/** A period's counter outlives the period by this much (a late settlement still finds it). */
export const SPEND_TTL_SLACK_MS = 3_600_000;
export type PolicyKind =
  | typeof KIND_SPEND_BUDGET
  | typeof KIND_SLIDING_WINDOW
  | typeof KIND_TOKEN_BUCKET
  | typeof KIND_TOKEN_BUDGET
  | typeof KIND_SLIDING_BUCKETS;

/**
 * Where the exact log stays: a sliding-window policy whose limit is at most this keeps the
 * sorted-set log (kind 1); a larger limit uses the sub-bucket window (kind 4). Why 1,000: the log
 * costs a ZADD into a set of up to `limit` members per request and ~100 B per member (a skiplist
 * above 128 members), so its cost grows with the limit, while the sub-bucket window costs the same
 * at any limit; its error (below) is at most one bucket's worth of traffic, i.e. 1/60 of the window,
 * which at a limit of 1,000 or less is a handful of requests — there the exact log is cheap enough
 * and its exactness is worth keeping (the defaults, key 60, user 600, IP 1,000 per minute, all stay
 * exact).
 */
export const SLIDING_EXACT_MAX = 1000;
/** Sub-buckets per window (the bucket size is ceil(window / SUB_BUCKETS) ms). */
export const SUB_BUCKETS = 60;

/**
 * Exact logs (sliding window, token budget) count the window (ZCOUNT above the cutoff) and are
 * trimmed lazily: only when their oldest entry is more than `logSlackMs(window)` out of the window
 * (see client-limits.lua, "The exact logs").
 */
/** How far out of the window an exact log's oldest entry may be before the log is trimmed. */
export function logSlackMs(windowMs: number): number {
  return Math.ceil(windowMs / SUB_BUCKETS);
}
/** An exact log's TTL, set when the log is created or trimmed (never drops a live entry: client-limits.lua). */
export function logTtlMs(windowMs: number): number {
  return 2 * windowMs + logSlackMs(windowMs);
}

/** The sliding-window kind for a limit: the exact log up to SLIDING_EXACT_MAX, sub-buckets above. */
export function slidingKind(limit: number): typeof KIND_SLIDING_WINDOW | typeof KIND_SLIDING_BUCKETS {
  return limit > SLIDING_EXACT_MAX ? KIND_SLIDING_BUCKETS : KIND_SLIDING_WINDOW;
}

/** A sub-bucket window's bucket size in ms. */
export function subBucketMs(windowMs: number): number {
  return Math.ceil(windowMs / SUB_BUCKETS);
}

/** Keys a policy kind uses, in KEYS order. */
export function keyCount(kind: PolicyKind): number {
  return kind === KIND_TOKEN_BUDGET || kind === KIND_SPEND_BUDGET ? 2 : 1;
}

/** ARGV per policy: kind, limit, window_ms, burst, cost. */
export const ARGS_PER_POLICY = 5;
/** Values returned per policy: admitted (0/1), remaining, current, reset_ms, retry_ms. */
export const RESULTS_PER_POLICY = 5;

/** Status values (first element of the reply). */
export const ADMITTED = 1;
export const REJECTED = 0;
/** The script ran after the caller's deadline: it changed nothing (the caller had given up). */
export const STALE = -1;

/** A settled request's mark in its counter's reservations: `<request member>:s` (worth 0). */
export const SETTLED_MARK = 's';

/**
 * The spend budgets' reservations as a Lua library (docs/spend.md "Budgets"; twins below:
 * spendSweep, settleSpendLocal). A reservation is `<member>:<µ$>` scored by its deadline; a
 * settlement replaces it by `<member>:s` with the same deadline (what makes a settlement sent twice
 * count once), and leaves `<member>:s` even when it found no reservation (swept, or never made).
 *   fg_rl_spend_sweep(key, res, now_ms): removes every member whose deadline is <= now_ms and takes
 *     the reservations among them off the counter (when it still exists): the reservation of a
 *     request that will never settle (its instance died) goes back.
 *   fg_rl_settle(key, res, m, reserved, actual, ttl, now_ms): on a counter that still exists (a
 *     counter gone with its period, or reset by an admin, is left alone: false): already settled
 *     (`m:s` there) → nothing; reservation `m:<reserved>` there → counter += actual − reserved; not
 *     there (swept, or none was made: failing open) → counter += actual. Returns the counter.
 */
export const SPEND_BUDGET_LUA = `
local function fg_rl_spend_sweep(key, res, now_ms)
  local gone = redis.call('ZRANGEBYSCORE', res, '-inf', now_ms)
  if #gone == 0 then return end
  local back = 0
  for _, m in ipairs(gone) do back = back + (tonumber(string.match(m, ':(%d+)$')) or 0) end
  redis.call('ZREMRANGEBYSCORE', res, '-inf', now_ms)
  if back > 0 and redis.call('EXISTS', key) == 1 then redis.call('DECRBY', key, string.format('%d', back)) end
end

local function fg_rl_settle(key, res, m, reserved, actual, ttl, now_ms)
  if redis.call('EXISTS', key) == 0 then return false end
  fg_rl_spend_sweep(key, res, now_ms)
  local mark = m .. ':${SETTLED_MARK}'
  if redis.call('ZSCORE', res, mark) then return tonumber(redis.call('GET', key)) end
  local delta, deadline = actual, now_ms + ttl
  if reserved > 0 then
    local rm = m .. ':' .. string.format('%d', reserved)
    local s = redis.call('ZSCORE', res, rm)
    if s then
      redis.call('ZREM', res, rm)
      delta, deadline = actual - reserved, tonumber(s)
    end
  end
  local fresh = redis.call('EXISTS', res) == 0
  redis.call('ZADD', res, deadline, mark)
  if fresh then
    local t = redis.call('PTTL', key)
    if t > 0 then redis.call('PEXPIRE', res, t) end
  end
  return redis.call('INCRBY', key, string.format('%d', delta))
end
`;

/** The amount (µ$) of a reservation member (`<member>:<µ$>`); 0 for a settled mark. */
function reservedOf(member: string): number {
  const m = /:(\d+)$/.exec(member);
  return m ? Number(m[1]) : 0;
}

/** Removes a sorted-set member, deleting the set when it empties (as Redis does). */
function zremLike(db: LocalDb, key: string, member: string): number {
  const n = db.zrem(key, member);
  if (n > 0 && db.zcard(key) === 0) db.del(key);
  return n;
}

/** Twin of fg_rl_spend_sweep. */
export function spendSweep(db: LocalDb, key: string, res: string, nowMs: number): void {
  const gone = db.zrange(res, 0, -1).filter((e) => e.score <= nowMs);
  if (gone.length === 0) return;
  const back = gone.reduce((sum, e) => sum + reservedOf(e.member), 0);
  db.zremrangebyscore(res, -Infinity, nowMs);
  if (db.zcard(res) === 0) db.del(res);
  if (back > 0 && db.exists(key)) db.incrby(key, -back);
}

/** Twin of fg_rl_settle: the counter after the settlement, null when it is gone. */
export function settleSpendLocal(
  db: LocalDb,
  key: string,
  res: string,
  member: string,
  reserved: number,
  actual: number,
  ttlMs: number,
  nowMs: number,
): number | null {
  if (!db.exists(key)) return null;
  spendSweep(db, key, res, nowMs);
  const mark = `${member}:${SETTLED_MARK}`;
  if (db.zscore(res, mark) !== null) return Number(db.get(key));
  let delta = actual;
  let deadline = nowMs + ttlMs;
  if (reserved > 0) {
    const rm = `${member}:${reserved}`;
    const s = db.zscore(res, rm);
    if (s !== null) {
      zremLike(db, res, rm);
      delta = actual - reserved;
      deadline = s;
    }
  }
  const fresh = !db.exists(res);
  db.zadd(res, deadline, mark);
  if (fresh) {
    const t = db.pttl(key);
    if (t > 0) db.pexpire(res, t);
  }
  return db.incrby(key, delta);
}

/**
 * The client limits as a Lua library (fg_client_evaluate / fg_client_reply), read from
 * client-limits.lua (after the spend library it calls); its constants must equal ours (checked when
 * the file is read).
 */
export const CLIENT_LIMITS_LUA = `${SPEND_BUDGET_LUA}
${readLua(new URL('./client-limits.lua', import.meta.url), {
  RL_STALE: STALE,
  RL_ADMITTED: ADMITTED,
  RL_REJECTED: REJECTED,
  RL_SLIDING_WINDOW: KIND_SLIDING_WINDOW,
  RL_TOKEN_BUCKET: KIND_TOKEN_BUCKET,
  RL_SLIDING_BUCKETS: KIND_SLIDING_BUCKETS,
  RL_SPEND_BUDGET: KIND_SPEND_BUDGET,
  RL_SPEND_TTL_SLACK_MS: SPEND_TTL_SLACK_MS,
  RL_SUB_BUCKETS: SUB_BUCKETS,
  RL_ARGS_PER_POLICY: ARGS_PER_POLICY,
})}`;

/** fg_rl_charge (token-charge.lua): the budget charge as a Lua library (twin: chargeBudget). */
export const TOKEN_CHARGE_LUA = readLua(new URL('./token-charge.lua', import.meta.url), {
  RL_CHARGE_SLACK_PARTS: SUB_BUCKETS,
});

const ADMISSION_LUA = `${CLIENT_LIMITS_LUA}
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local st = fg_client_evaluate(KEYS, ARGV, now_ms, now_us)
return fg_client_reply(st, st.all_ok and not st.dry)
`;

function tokensOf(member: string): number {
  const m = /:(\d+)$/.exec(member);
  return m ? Number(m[1]) : 0;
}

/** Twin of fg_rl_log_oldest: the oldest entry in the window (cutoff exclusive), null when none. */
function logOldest(db: LocalDb, key: string, cutoff: number): number | null {
  for (const e of db.zrange(key, 0, -1)) if (e.score > cutoff) return e.score;
  return null;
}

/** The tokens of a budget log's charges at or below the cutoff. */
function staleTokens(db: LocalDb, key: string, cutoff: number): number {
  let gone = 0;
  for (const e of db.zrange(key, 0, -1)) {
    if (e.score > cutoff) break;
    gone += tokensOf(e.member);
  }
  return gone;
}

/** Twin of fg_rl_charge: charges `tokens` to a token budget (log, sum) at nowMs; the sum after it. */
export function chargeBudget(
  db: LocalDb,
  log: string,
  sum: string,
  member: string,
  tokens: number,
  window: number,
  nowMs: number,
): number {
  const slack = logSlackMs(window);
  const ttl = logTtlMs(window);
  const cutoff = nowMs - window;
  const oldest = db.zfirst(log);
  if (!oldest) {
    db.zadd(log, nowMs, `${member}:${tokens}`);
    db.pexpire(log, ttl);
    db.set(sum, String(tokens), ttl);
    return tokens;
  }
  if (oldest.score <= cutoff - slack) {
    const gone = staleTokens(db, log, cutoff);
    db.zremrangebyscore(log, -Infinity, cutoff);
    db.zadd(log, nowMs, `${member}:${tokens}`);
    const v = db.incrby(sum, tokens - gone);
    db.pexpire(log, ttl);
    db.pexpire(sum, ttl);
    return v;
  }
  db.zadd(log, nowMs, `${member}:${tokens}`);
  const v = db.incrby(sum, tokens);
  if (v === tokens) db.pexpire(sum, ttl);
  return v;
}

const SB_META = new Set(['s', 'lo', 'b']);

/** Twin of fg_rl_sb_trim: deletes the buckets below `first`; the new s and lo (null: hash gone). */
function sbTrim(db: LocalDb, key: string, first: number, s: number): [number, number | null] {
  let lo: number | null = null;
  const dead: string[] = [];
  for (const [f, v] of Object.entries(db.hgetall(key))) {
    if (SB_META.has(f)) continue;
    const id = Number(f);
    if (id < first) {
      s -= Number(v);
      dead.push(f);
    } else if (lo === null || id < lo) lo = id;
  }
  if (lo === null) {
    db.del(key);
    return [0, null];
  }
  for (const f of dead) db.hdel(key, f);
  db.hset(key, { s, lo });
  return [s, lo];
}

/** Twin of fg_rl_sb_count. */
function sbCount(db: LocalDb, p: LocalPolicy, nowMs: number): number {
  p.bms = subBucketMs(p.window);
  const first = Math.floor(nowMs / p.bms) - SUB_BUCKETS;
  let s = Number(db.hget(p.key, 's') ?? '0') || 0;
  const loText = db.hget(p.key, 'lo');
  let lo: number | null = loText === null ? null : Number(loText);
  const b = db.hget(p.key, 'b');
  if (b !== null && Number(b) !== p.bms) {
    db.del(p.key);
    s = 0;
    lo = null;
  } else if (lo !== null && lo < first) {
    [s, lo] = sbTrim(db, p.key, first, s);
  }
  p.lo = lo;
  return s;
}

/** Twin of fg_rl_sb_retry. */
function sbRetry(db: LocalDb, p: LocalPolicy, nowMs: number): number {
  if (p.cost > p.limit) return p.window;
  const ids = Object.entries(db.hgetall(p.key))
    .filter(([f]) => !SB_META.has(f))
    .map(([f, v]) => [Number(f), Number(v)] as const)
    .sort((x, y) => x[0] - y[0]);
  let left = p.count;
  for (const [id, v] of ids) {
    left -= v;
    if (left + p.cost <= p.limit) return (id + SUB_BUCKETS + 1) * p.bms - nowMs;
  }
  return p.window;
}

export interface LocalPolicy {
  kind: number;
  limit: number;
  window: number;
  burst: number;
  cost: number;
  key: string;
  sum?: string;
  /** Spend budget: its reservations' sorted set. */
  res?: string;
  retry: number;
  ok: boolean;
  count: number;
  interval: number;
  tat: number;
  used: number;
  /** Sub-bucket window: the bucket size (ms) and the lowest bucket id present (null: none). */
  bms: number;
  lo: number | null;
  /** Exact logs: the window's start (exclusive), the trim slack, the log was absent. */
  cutoff: number;
  slack: number;
  fresh: boolean;
  /** Exact logs: the oldest entry in the window (null: none; false: not read yet). */
  oldest: number | null | false;
}

/** Phase 1 of the client limits (TypeScript twin of fg_client_evaluate): evaluates, records nothing. */
export interface ClientEvaluation {
  /** The script ran after the caller's deadline: nothing was looked at. */
  stale: boolean;
  allOk: boolean;
  dry: boolean;
  nowMs: number;
  member: string;
  policies: LocalPolicy[];
}

export function clientEvaluate(db: LocalDb, keys: string[], args: string[], nowMs: number): ClientEvaluation {
  const nowUs = nowMs * 1000;
  const st: ClientEvaluation = {
    stale: false,
    allOk: true,
    dry: args[2] === '1',
    nowMs,
    member: args[0]!,
    policies: [],
  };
  const deadline = Number(args[1]);
  if (deadline > 0 && nowMs > deadline) {
    st.stale = true;
    return st;
  }
  const n = Number(args[3]);
  let k = 0;
  for (let i = 0; i < n; i++) {
    const b = 4 + i * ARGS_PER_POLICY;
    const p: LocalPolicy = {
      kind: Number(args[b]),
      limit: Number(args[b + 1]),
      window: Number(args[b + 2]),
      burst: Number(args[b + 3]),
      cost: Number(args[b + 4]),
      key: keys[k]!,
      retry: 0,
      ok: true,
      count: 0,
      interval: 0,
      tat: 0,
      used: 0,
      bms: 0,
      lo: null,
      cutoff: 0,
      slack: 0,
      fresh: false,
      oldest: null,
    };
    if (p.kind === KIND_SLIDING_WINDOW) {
      k += 1;
      p.cutoff = nowMs - p.window;
      p.slack = logSlackMs(p.window);
      const o = db.zfirst(p.key)?.score ?? null;
      p.fresh = o === null;
      if (o !== null && o <= p.cutoff - p.slack) {
        db.zremrangebyscore(p.key, -Infinity, p.cutoff);
        p.count = db.zcard(p.key);
        if (p.count > 0) db.pexpire(p.key, logTtlMs(p.window));
        else p.fresh = true;
        p.oldest = p.count > 0 ? false : null;
      } else if (o === null) {
        p.count = 0;
        p.oldest = null;
      } else if (o > p.cutoff) {
        p.count = db.zcard(p.key);
        p.oldest = o;
      } else {
        p.count = db.zcount(p.key, p.cutoff + 0.5, Infinity);
        p.oldest = p.count > 0 ? false : null;
      }
      p.ok = p.count + p.cost <= p.limit;
      if (!p.ok) {
        if (p.cost > p.limit) p.retry = p.window;
        else {
          const rank = p.count + p.cost - p.limit - 1;
          const at =
            rank === 0 && p.oldest
              ? p.oldest
              : db.zrange(p.key, 0, -1).filter((e) => e.score > p.cutoff)[rank]!.score;
          p.retry = at + p.window - nowMs;
        }
      }
    } else if (p.kind === KIND_SLIDING_BUCKETS) {
      k += 1;
      p.count = sbCount(db, p, nowMs);
      p.ok = p.count + p.cost <= p.limit;
      if (!p.ok) p.retry = sbRetry(db, p, nowMs);
    } else if (p.kind === KIND_SPEND_BUDGET) {
      p.res = keys[k + 1]!;
      k += 2;
      spendSweep(db, p.key, p.res, nowMs);
      p.used = Number(db.get(p.key) ?? '0') || 0;
      p.ok = p.used + p.cost <= p.limit;
      if (!p.ok) p.retry = p.window;
    } else if (p.kind === KIND_TOKEN_BUCKET) {
      k += 1;
      p.interval = Math.ceil((p.window * 1000) / p.limit);
      p.tat = Math.max(Number(db.get(p.key) ?? '0'), nowUs);
      const allowAt = p.tat + p.interval * p.cost - p.burst * p.interval;
      p.ok = allowAt <= nowUs;
      if (!p.ok) p.retry = Math.ceil((allowAt - nowUs) / 1000);
    } else {
      p.sum = keys[k + 1]!;
      k += 2;
      p.cutoff = nowMs - p.window;
      p.slack = logSlackMs(p.window);
      const o = db.zfirst(p.key)?.score ?? null;
      if (o === null) {
        p.used = 0;
        p.oldest = null;
      } else if (o <= p.cutoff - p.slack) {
        const gone = staleTokens(db, p.key, p.cutoff);
        db.zremrangebyscore(p.key, -Infinity, p.cutoff);
        if (db.zcard(p.key) === 0) {
          db.del(p.sum);
          p.used = 0;
          p.oldest = null;
        } else {
          p.used = db.incrby(p.sum, -gone);
          db.pexpire(p.key, logTtlMs(p.window));
          db.pexpire(p.sum, logTtlMs(p.window));
          p.oldest = false;
        }
      } else if (o <= p.cutoff) {
        p.used = (Number(db.get(p.sum) ?? '0') || 0) - staleTokens(db, p.key, p.cutoff);
        p.oldest = false;
      } else {
        p.used = Number(db.get(p.sum) ?? '0') || 0;
        p.oldest = o;
      }
      if (p.used < 0) p.used = 0;
      p.ok = p.used < p.limit;
      if (!p.ok) {
        let left = p.used;
        for (const en of db.zrange(p.key, 0, -1)) {
          if (en.score <= p.cutoff) continue;
          left -= tokensOf(en.member);
          if (left < p.limit) {
            p.retry = en.score + p.window - nowMs;
            break;
          }
        }
      }
    }
    if (!p.ok) st.allOk = false;
    st.policies.push(p);
  }
  return st;
}

/** Phase 2 (twin of fg_client_reply): records the request when `commit`, and builds the reply. */
export function clientReply(db: LocalDb, st: ClientEvaluation, commit: boolean): number[] {
  const nowMs = st.nowMs;
  const nowUs = nowMs * 1000;
  if (st.stale) return [STALE, nowMs];
  const out: number[] = [st.allOk ? ADMITTED : REJECTED, nowMs];
  for (const p of st.policies) {
    let remaining = 0;
    let current = 0;
    let reset = 0;
    if (p.kind === KIND_SLIDING_WINDOW) {
      if (commit && p.cost > 0) {
        for (let j = 1; j <= p.cost; j++) db.zadd(p.key, nowMs, j > 1 ? `${st.member}:${j}` : st.member);
        if (p.fresh) db.pexpire(p.key, logTtlMs(p.window));
        if (p.count === 0) p.oldest = nowMs;
        p.count += p.cost;
      }
      current = p.count;
      remaining = Math.max(0, p.limit - current);
      if (current > 0) {
        if (!p.oldest) p.oldest = logOldest(db, p.key, p.cutoff);
        reset = p.oldest! + p.window - nowMs;
      }
    } else if (p.kind === KIND_SLIDING_BUCKETS) {
      if (commit && p.cost > 0) {
        const id = Math.floor(nowMs / p.bms);
        if (db.hincrby(p.key, String(id), p.cost) === p.cost) {
          db.pexpire(p.key, (SUB_BUCKETS + 1) * p.bms);
          if (p.lo === null) {
            db.hset(p.key, { lo: id, b: p.bms });
            p.lo = id;
          }
        }
        db.hincrby(p.key, 's', p.cost);
        p.count += p.cost;
      }
      current = p.count;
      remaining = Math.max(0, p.limit - current);
      if (current > 0 && p.lo !== null) reset = (p.lo + SUB_BUCKETS + 1) * p.bms - nowMs;
    } else if (p.kind === KIND_SPEND_BUDGET) {
      if (commit && p.cost > 0) {
        p.used = db.incrby(p.key, p.cost);
        db.zadd(p.res!, nowMs + p.burst, `${st.member}:${p.cost}`);
        if (p.window > 0) {
          db.pexpire(p.key, p.window + SPEND_TTL_SLACK_MS);
          db.pexpire(p.res!, p.window + SPEND_TTL_SLACK_MS);
        }
      }
      current = p.used;
      remaining = Math.max(0, p.limit - p.used);
      reset = p.window;
    } else if (p.kind === KIND_TOKEN_BUCKET) {
      if (commit && p.cost > 0) {
        p.tat += p.interval * p.cost;
        db.set(p.key, String(p.tat), Math.ceil((p.tat - nowUs) / 1000) + 1);
      }
      remaining = Math.floor((nowUs + p.burst * p.interval - p.tat) / p.interval);
      remaining = Math.min(p.burst, Math.max(0, remaining));
      current = p.burst - remaining;
      if (remaining < p.burst) {
        reset = Math.ceil((p.tat - p.burst * p.interval + (remaining + 1) * p.interval - nowUs) / 1000);
      }
    } else {
      current = p.used;
      remaining = Math.max(0, p.limit - p.used);
      if (p.oldest === false) p.oldest = logOldest(db, p.key, p.cutoff);
      if (p.oldest) reset = p.oldest + p.window - nowMs;
    }
    out.push(p.ok ? 1 : 0, remaining, current, reset, p.retry);
  }
  return out;
}

/**
 * KEYS: per policy (1 key; 2 for a token budget: log, sum).
 * ARGV: member, deadline_ms (Redis clock, 0 = none), dry_run (1 = evaluate only), n,
 *       n × (kind, limit, window_ms, burst, cost).
 * Reply: [status, now_ms, n × (admitted, remaining, current, reset_ms, retry_ms)].
 */
export const AdmissionScript: AtomicScript<number[]> = {
  name: 'rate-limit-admission',
  lua: ADMISSION_LUA,
  local(db, keys, args, nowMs) {
    const st = clientEvaluate(db, keys, args, nowMs);
    return clientReply(db, st, st.allOk && !st.dry);
  },
};

/**
 * Charges actual token usage to a budget (after the response) on its own: a Redis Cluster's answer
 * path (on a single Redis and embedded the charge rides in the key pool's release: CHARGE_STEP).
 * KEYS: log, sum. ARGV: member (unique), tokens (integer > 0), window_ms. Reply: [the budget's sum
 * after the charge (charges less than one trim slack out of the window may still be in it), now_ms].
 */
export const ChargeTokensScript: AtomicScript<number[]> = {
  name: 'rate-limit-charge-tokens',
  lua: `${TOKEN_CHARGE_LUA}
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return { fg_rl_charge(KEYS[1], KEYS[2], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), now_ms), now_ms }
`,
  local(db, keys, args, nowMs) {
    return [chargeBudget(db, keys[0]!, keys[1]!, args[0]!, Number(args[1]), Number(args[2]), nowMs), nowMs];
  },
};

/** The store's clock in a script (ms). */
const NOW_MS_LUA = `local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)`;

/**
 * Settles a request's spend reservation on its own (docs/spend.md "Budgets"): KEYS per counter
 * (counter, reservations); ARGV [member, reserved µ$, actual µ$, ttl_ms] (fg_rl_settle). Idempotent:
 * run twice, it counts once. Reply: the counters after it (-1: gone).
 */
export const SettleSpendScript: AtomicScript<number[]> = {
  name: 'rate-limit-settle-spend',
  lua: `${SPEND_BUDGET_LUA}
${NOW_MS_LUA}
local out = {}
for i = 1, #KEYS, 2 do
  out[#out + 1] = fg_rl_settle(KEYS[i], KEYS[i + 1], ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), now_ms) or -1
end
return out
`,
  local(db, keys, args, nowMs) {
    const out: number[] = [];
    for (let i = 0; i < keys.length; i += 2) {
      out.push(
        settleSpendLocal(
          db,
          keys[i]!,
          keys[i + 1]!,
          args[0]!,
          Number(args[1]),
          Number(args[2]),
          Number(args[3]),
          nowMs,
        ) ?? -1,
      );
    }
    return out;
  },
};

/**
 * Keeps live requests' reservations: KEYS reservation sets, ARGV [ttl_ms, one member
 * (`<member>:<µ$>`) per key]. Moves each member's deadline to now + ttl (never earlier). Reply: per
 * key 1 (renewed), 0 (gone: swept — its request outlived its deadline — or settled).
 */
export const RenewSpendScript: AtomicScript<number[]> = {
  name: 'rate-limit-renew-spend',
  lua: `${NOW_MS_LUA}
local d = now_ms + tonumber(ARGV[1])
local out = {}
for i = 1, #KEYS do
  local s = redis.call('ZSCORE', KEYS[i], ARGV[i + 1])
  if s then
    if tonumber(s) < d then redis.call('ZADD', KEYS[i], 'XX', d, ARGV[i + 1]) end
    out[i] = 1
  else
    out[i] = 0
  end
end
return out
`,
  local(db, keys, args, nowMs) {
    const d = nowMs + Number(args[0]);
    return keys.map((k, i) => {
      const s = db.zscore(k, args[i + 1]!);
      if (s === null) return 0;
      if (s < d) db.zadd(k, d, args[i + 1]!);
      return 1;
    });
  },
};

/**
 * A spend budget's state (the admin API): KEYS counter, reservations. Gives back the reservations
 * past their deadline first (as an admission would). Reply: [counter (-1: none), µ$ reserved by the
 * outstanding reservations, their count, now_ms].
 */
export const SpendStateScript: AtomicScript<number[]> = {
  name: 'rate-limit-spend-state',
  lua: `${SPEND_BUDGET_LUA}
${NOW_MS_LUA}
fg_rl_spend_sweep(KEYS[1], KEYS[2], now_ms)
local reserved, n = 0, 0
for _, m in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local v = tonumber(string.match(m, ':(%d+)$'))
  if v then reserved = reserved + v; n = n + 1 end
end
return { tonumber(redis.call('GET', KEYS[1]) or '-1'), reserved, n, now_ms }
`,
  local(db, keys, _args, nowMs) {
    spendSweep(db, keys[0]!, keys[1]!, nowMs);
    let reserved = 0;
    let n = 0;
    for (const e of db.zrange(keys[1]!, 0, -1)) {
      if (!/:\d+$/.test(e.member)) continue;
      reserved += reservedOf(e.member);
      n++;
    }
    return [Number(db.get(keys[0]!) ?? '-1'), reserved, n, nowMs];
  },
};

/** Deletes every state key of a subject (admin reset). KEYS: the keys. Reply: how many existed. */
export const ResetScript: AtomicScript<number> = {
  name: 'rate-limit-reset',
  lua: `if #KEYS == 0 then return 0 end return redis.call('DEL', unpack(KEYS))`,
  local(db, keys) {
    return keys.length === 0 ? 0 : db.del(...keys);
  },
};

/**
 * Undoes one committed AdmissionScript step (Redis Cluster: the client limits run as one step per
 * subject, and a later subject's refusal rolls back the earlier ones). KEYS/ARGV: the step's own
 * (member, admitted_at, dry_run, n, n × (kind, limit, window_ms, burst, cost)), with the deadline's
 * place holding the admission's time (the Redis clock in ms: its reply's now_ms); dry_run is
 * ignored — a rollback always runs.
 * - sliding window: ZREM the request's member(s) (`member`, `member:2`, …) — exact and idempotent;
 * - sliding window of sub-buckets: the bucket the admission was counted in (floor(admitted_at /
 *   bms)) and the sum go down by `cost` (never below 0; nothing when that bucket has left the
 *   window: it no longer counts) — not idempotent: run it once;
 * - token bucket: TAT −= interval·cost, never below now (a TAT at or behind now is a full bucket:
 *   the key is deleted) — not idempotent: run it once;
 * - token budget: nothing (check-only at admission);
 * - spend budget: ZREM the reservation (`member:cost`) and, when it was there and the counter still
 *   exists, DECRBY it — idempotent.
 * Reply: [places given back, now_ms].
 */
export const RollbackScript: AtomicScript<number[]> = {
  name: 'rate-limit-rollback',
  lua: `
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local member = ARGV[1]
local n = tonumber(ARGV[4])
local k = 1
local undone = 0
for i = 1, n do
  local b = 4 + (i - 1) * ${ARGS_PER_POLICY}
  local kind, limit, window, cost = tonumber(ARGV[b + 1]), tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), tonumber(ARGV[b + 5])
  if kind == ${KIND_SLIDING_WINDOW} then
    local was = undone
    for j = 1, cost do
      local m = member
      if j > 1 then m = member .. ':' .. j end
      undone = undone + redis.call('ZREM', KEYS[k], m)
    end
    -- the log's TTL rule (client-limits.lua) wants a renewal whenever an entry leaves it
    if undone > was then redis.call('PEXPIRE', KEYS[k], 2 * window + math.ceil(window / ${SUB_BUCKETS})) end
    k = k + 1
  elseif kind == ${KIND_SLIDING_BUCKETS} then
    local bms = math.ceil(window / ${SUB_BUCKETS})
    local id = math.floor(tonumber(ARGV[2]) / bms)
    local h = redis.call('HMGET', KEYS[k], tostring(id), 'b')
    local v = tonumber(h[1] or '0') or 0
    if cost > 0 and v > 0 and tonumber(h[2] or '0') == bms and id >= math.floor(now_ms / bms) - ${SUB_BUCKETS} then
      local take = math.min(cost, v)
      redis.call('HINCRBY', KEYS[k], tostring(id), -take)
      redis.call('HINCRBY', KEYS[k], 's', -take)
      undone = undone + take
    end
    k = k + 1
  elseif kind == ${KIND_SPEND_BUDGET} then
    -- the reservation given back (one already swept, or a counter gone with its period, has
    -- nothing to give back)
    if cost > 0 and redis.call('ZREM', KEYS[k + 1], member .. ':' .. ARGV[b + 5]) == 1
      and redis.call('EXISTS', KEYS[k]) == 1 then
      redis.call('DECRBY', KEYS[k], ARGV[b + 5])
      undone = undone + 1
    end
    k = k + 2
  elseif kind == ${KIND_TOKEN_BUCKET} then
    local tat = tonumber(redis.call('GET', KEYS[k]) or '0')
    if cost > 0 and tat > now_us then
      local back = tat - math.ceil(window * 1000 / limit) * cost
      if back <= now_us then
        redis.call('DEL', KEYS[k])
      else
        redis.call('SET', KEYS[k], back, 'PX', math.ceil((back - now_us) / 1000) + 1)
      end
      undone = undone + 1
    end
    k = k + 1
  else
    k = k + 2
  end
end
return { undone, now_ms }
`,
  local(db, keys, args, nowMs) {
    const nowUs = nowMs * 1000;
    const member = args[0]!;
    const n = Number(args[3]);
    let k = 0;
    let undone = 0;
    for (let i = 0; i < n; i++) {
      const b = 4 + i * ARGS_PER_POLICY;
      const kind = Number(args[b]);
      const limit = Number(args[b + 1]);
      const window = Number(args[b + 2]);
      const cost = Number(args[b + 4]);
      if (kind === KIND_SLIDING_WINDOW) {
        const was = undone;
        for (let j = 1; j <= cost; j++) undone += db.zrem(keys[k]!, j > 1 ? `${member}:${j}` : member);
        if (undone > was) db.pexpire(keys[k]!, logTtlMs(window));
        k += 1;
      } else if (kind === KIND_SLIDING_BUCKETS) {
        const bms = subBucketMs(window);
        const id = String(Math.floor(Number(args[1]) / bms));
        const v = Number(db.hget(keys[k]!, id) ?? '0') || 0;
        const sameSize = Number(db.hget(keys[k]!, 'b') ?? '0') === bms;
        if (cost > 0 && v > 0 && sameSize && Number(id) >= Math.floor(nowMs / bms) - SUB_BUCKETS) {
          const take = Math.min(cost, v);
          db.hincrby(keys[k]!, id, -take);
          db.hincrby(keys[k]!, 's', -take);
          undone += take;
        }
        k += 1;
      } else if (kind === KIND_SPEND_BUDGET) {
        if (cost > 0 && zremLike(db, keys[k + 1]!, `${member}:${args[b + 4]}`) === 1 && db.exists(keys[k]!)) {
          db.incrby(keys[k]!, -cost);
          undone += 1;
        }
        k += 2;
      } else if (kind === KIND_TOKEN_BUCKET) {
        const tat = Number(db.get(keys[k]!) ?? '0');
        if (cost > 0 && tat > nowUs) {
          const back = tat - Math.ceil((window * 1000) / limit) * cost;
          if (back <= nowUs) db.del(keys[k]!);
          else db.set(keys[k]!, String(back), Math.ceil((back - nowUs) / 1000) + 1);
          undone += 1;
        }
        k += 1;
      } else {
        k += 2;
      }
    }
    return [undone, nowMs];
  },
};
