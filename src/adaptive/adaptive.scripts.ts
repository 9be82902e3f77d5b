import { keyStateKey, LEARNED_LIMIT_FIELD, type AdmissionGate } from '../key-pool/key-pool.types.js';
import type { AtomicScript } from '../state/atomic-store.js';
import type { LocalDb } from '../state/local-db.js';
import { appendHistory, decreaseFor429, increaseDecision } from './aimd.js';
import type { Upstream429Type } from './classify-429.js';
import {
  ACCEPTED_MARGIN_PERMILLE,
  bucketParams,
  emptyRetreatState,
  NORMAL,
  stepRetreat,
  WINDOW_SLOTS,
  type RetreatState,
} from './retreat-machine.js';

/**
 * Adaptive's atomic steps, each written twice (Redis Lua / LocalDb) per docs/CONVENTIONS.md.
 *
 * Store layout (every key of a provider shares the hash tag {providerId} with KeyPool's keys):
 *   kp:{p}:k:<id>   KeyPool's key hash; Adaptive owns field `cl` (the learned limit, read by the
 *                   selection script in the same atomic step as the slot is taken)
 *   ad:{p}:k:<id>   hash  ll copy of the learned limit, v version (ms), c/r/t/u 429 counts (concurrency/rpm/tpm/unknown), l4 last 429
 *                         (ms), lt its type, lc last concurrency 429 (ms), bd boundary (lowest in-flight
 *                         count a concurrency 429 happened at since the last probe), hold (ms), lp last probe (ms), h history (last 20)
 *   ad:{p}:rt       hash  retreat bucket: st state, f factor ‰, since, cut, calm, step, ob observed
 *                         base rpm, tk tokens, ts last refill (ms)
 *   ad:{p}:rw       hash  sliding window of upstream answers: 10 slots s<i> slot id, n<i> answers, e<i> 429s
 */
export function adaptiveKeyStateKey(providerId: string, keyId: string): string {
  return `ad:{${providerId}}:k:${keyId}`;
}
export function retreatStateKey(providerId: string): string {
  return `ad:{${providerId}}:rt`;
}
export function retreatWindowKey(providerId: string): string {
  return `ad:{${providerId}}:rw`;
}
/** KEYS of the learning scripts for one key. */
export function learnKeys(providerId: string, keyId: string): [string, string] {
  return [keyStateKey(providerId, keyId), adaptiveKeyStateKey(providerId, keyId)];
}

export const HISTORY_MAX = 20;
/** Adaptive's per-key hash outlives idle periods (Postgres is the durable copy). */
export const KEY_STATE_TTL_MS = 30 * 86_400_000;
const RT_TTL_MS = 86_400_000;

const LUA_NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

// ---------------------------------------------------------------------------------------------
// Learning: one script, four operations
// ---------------------------------------------------------------------------------------------

/**
 * KEYS: [kp key hash, ad key hash]. ARGV[1] = op:
 *   429:   type, inFlight, learned (1|0), initial, decrease‰, unknown‰, holdMs, minLimit
 *   inc:   expected, reason (high_utilisation|probe), inFlight, initial, maxLimit, probeIntervalMs
 *   reset: (none) — forgets the learned value, counters and history (the version survives)
 *   load:  version, learned ('' = none), c, r, t, u, l4, lt, lc, bd, lp, history — only when the
 *          store knows nothing newer (start-up reload from Postgres)
 * → [changed 0|1, old, new, version, code]. old/new = the current limit (learned or initial) when
 *   nothing changed; code = the adjustment reason, or why nothing changed.
 */
export type LearnResult = [number, number, number, number, string];

const LUA_LEARN = `${LUA_NOW}
local kh, ah = KEYS[1], KEYS[2]
local op = ARGV[1]
local function num(v, d) local n = tonumber(v) if n == nil then return d end return n end
local function bump()
  local v = num(redis.call('HGET', ah, 'v'), 0) + 1
  if now > v then v = now end
  redis.call('HSET', ah, 'v', v)
  redis.call('PEXPIRE', ah, ${KEY_STATE_TTL_MS})
  return v
end
-- The learned limit lives in KeyPool's key hash (read by the selection script) with a copy here
-- (field ll): KeyPool's hash expires after a long idle period, this one outlives it.
local function learnedOr(d)
  local v = tonumber(redis.call('HGET', kh, '${LEARNED_LIMIT_FIELD}'))
  if v == nil then v = tonumber(redis.call('HGET', ah, 'll')) end
  if v == nil then return d end
  return v
end
local function setLearned(v)
  redis.call('HSET', kh, '${LEARNED_LIMIT_FIELD}', v)
  redis.call('HSET', ah, 'll', v)
end
local function remember(old, new, reason, inflight)
  local rec = now .. '|' .. old .. '|' .. new .. '|' .. reason .. '|' .. inflight
  local h = redis.call('HGET', ah, 'h')
  if h and h ~= '' then h = h .. ';' .. rec else h = rec end
  local count = select(2, string.gsub(h, ';', ';')) + 1
  while count > ${HISTORY_MAX} do
    h = string.sub(h, string.find(h, ';', 1, true) + 1)
    count = count - 1
  end
  redis.call('HSET', ah, 'h', h)
end
if op == '429' then
  local typ, inflight, learned, initial = ARGV[2], num(ARGV[3], 0), ARGV[4] == '1', num(ARGV[5], 1)
  local dec, unk, holdMs, minLimit = num(ARGV[6], 850), num(ARGV[7], 900), num(ARGV[8], 0), num(ARGV[9], 1)
  local field = ({concurrency = 'c', rpm = 'r', tpm = 't'})[typ] or 'u'
  redis.call('HINCRBY', ah, field, 1)
  redis.call('HSET', ah, 'l4', now, 'lt', typ)
  if typ == 'concurrency' then
    redis.call('HSET', ah, 'lc', now)
    local bd = tonumber(redis.call('HGET', ah, 'bd'))
    if bd == nil or inflight < bd then redis.call('HSET', ah, 'bd', inflight) end
  end
  local cur = learnedOr(initial)
  if not learned then return {0, cur, cur, bump(), 'fixed'} end
  local nxt, reason = nil, nil
  if typ == 'concurrency' then
    local c = math.floor(inflight * dec / 1000)
    if c < minLimit then c = minLimit end
    if c < cur then nxt = c; reason = 'concurrency_429' end
  elseif typ == 'rpm' or typ == 'tpm' then
    reason = nil
  else
    local hold = num(redis.call('HGET', ah, 'hold'), 0)
    if now >= hold and cur > minLimit then
      local c = math.floor(cur * unk / 1000)
      if c > cur - 1 then c = cur - 1 end
      if c < minLimit then c = minLimit end
      if c < cur then nxt = c; reason = 'unknown_429' end
    end
  end
  if nxt == nil then return {0, cur, cur, bump(), 'no_change'} end
  setLearned(nxt)
  redis.call('HSET', ah, 'hold', now + holdMs)
  remember(cur, nxt, reason, inflight)
  return {1, cur, nxt, bump(), reason}
elseif op == 'inc' then
  local expected, reason, inflight, initial = num(ARGV[2], -1), ARGV[3], num(ARGV[4], 0), num(ARGV[5], 1)
  local maxLimit, probeMs = num(ARGV[6], 100), num(ARGV[7], 300000)
  local cur = learnedOr(initial)
  if cur ~= expected then return {0, cur, cur, num(redis.call('HGET', ah, 'v'), 0), 'stale'} end
  local v = num(redis.call('HGET', ah, 'v'), 0)
  if now < num(redis.call('HGET', ah, 'hold'), 0) then return {0, cur, cur, v, 'hold'} end
  if cur >= maxLimit then return {0, cur, cur, v, 'max'} end
  if reason == 'high_utilisation' then
    local bd = tonumber(redis.call('HGET', ah, 'bd'))
    if bd ~= nil and cur + 1 >= bd then return {0, cur, cur, v, 'boundary'} end
  else
    if now - num(redis.call('HGET', ah, 'lc'), 0) < probeMs or now - num(redis.call('HGET', ah, 'lp'), 0) < probeMs then
      return {0, cur, cur, v, 'quiet_period'}
    end
    redis.call('HSET', ah, 'lp', now)
    redis.call('HDEL', ah, 'bd')
  end
  setLearned(cur + 1)
  remember(cur, cur + 1, reason, inflight)
  return {1, cur, cur + 1, bump(), reason}
elseif op == 'reset' then
  local v = num(redis.call('HGET', ah, 'v'), 0)
  redis.call('HDEL', kh, '${LEARNED_LIMIT_FIELD}')
  redis.call('DEL', ah)
  redis.call('HSET', ah, 'v', v)
  return {1, 0, 0, bump(), 'reset'}
elseif op == 'load' then
  local version = num(ARGV[2], 0)
  local have = tonumber(redis.call('HGET', ah, 'v'))
  if have ~= nil and have >= version then return {0, 0, 0, have, 'newer'} end
  redis.call('DEL', ah)
  redis.call('HSET', ah, 'v', version, 'c', num(ARGV[4], 0), 'r', num(ARGV[5], 0), 't', num(ARGV[6], 0), 'u', num(ARGV[7], 0))
  local names = {'l4', 'lt', 'lc', 'bd', 'lp', 'h'}
  for i, name in ipairs(names) do
    local value = ARGV[7 + i]
    if value ~= nil and value ~= '' then redis.call('HSET', ah, name, value) end
  end
  redis.call('PEXPIRE', ah, ${KEY_STATE_TTL_MS})
  if ARGV[3] ~= '' then setLearned(ARGV[3]) else redis.call('HDEL', kh, '${LEARNED_LIMIT_FIELD}') end
  return {1, 0, 0, version, 'loaded'}
end
return redis.error_reply('unknown op ' .. tostring(op))
`;

function n(v: string | null | undefined, d: number): number {
  if (v === null || v === undefined || v === '') return d;
  const x = Number(v);
  return Number.isNaN(x) ? d : x;
}

function localLearn(db: LocalDb, keys: string[], args: string[], now: number): LearnResult {
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
    const change = decreaseFor429(cur, type, inFlight, now < n(db.hget(ah, 'hold'), 0), {
      decreasePermille: n(args[5], 850),
      unknownPermille: n(args[6], 900),
      minLimit: n(args[8], 1),
    });
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
      },
      { maxLimit: n(args[5], 100), probeIntervalMs: n(args[6], 300000) },
    );
    if (!d.ok) return [0, cur, cur, v, d.why];
    if (reason === 'probe') {
      db.hset(ah, { lp: now });
      db.hdel(ah, 'bd');
    }
    setLearned(d.limit);
    remember(cur, d.limit, reason, inFlight);
    return [1, cur, d.limit, bump(), reason];
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
  lua: LUA_LEARN,
  local: localLearn,
};

/** The fields `learnSnapshotScript` returns per key, in order. */
export const SNAPSHOT_FIELDS = [
  'cl',
  'v',
  'c',
  'r',
  't',
  'u',
  'l4',
  'lt',
  'lc',
  'bd',
  'hold',
  'lp',
  'h',
] as const;
export type KeySnapshot = Record<(typeof SNAPSHOT_FIELDS)[number], string>;

/** KEYS: pairs [kp key hash, ad key hash]. Read-only. → flat strings, SNAPSHOT_FIELDS per key ('' = absent). */
export const learnSnapshotScript: AtomicScript<string[]> = {
  name: 'adaptive-snapshot',
  lua: `
local out = {}
for i = 1, #KEYS, 2 do
  local cl = redis.call('HGET', KEYS[i], '${LEARNED_LIMIT_FIELD}') or redis.call('HGET', KEYS[i + 1], 'll')
  table.insert(out, cl or '')
  local vals = redis.call('HMGET', KEYS[i + 1], ${SNAPSHOT_FIELDS.slice(1)
    .map((f) => `'${f}'`)
    .join(', ')})
  for j = 1, ${SNAPSHOT_FIELDS.length - 1} do table.insert(out, vals[j] or '') end
end
return out
`,
  local(db, keys) {
    const out: string[] = [];
    for (let i = 0; i < keys.length; i += 2) {
      out.push(db.hget(keys[i]!, LEARNED_LIMIT_FIELD) ?? db.hget(keys[i + 1]!, 'll') ?? '');
      for (const f of SNAPSHOT_FIELDS.slice(1)) out.push(db.hget(keys[i + 1]!, f) ?? '');
    }
    return out;
  },
};

export function parseSnapshots(flat: string[], count: number): KeySnapshot[] {
  const out: KeySnapshot[] = [];
  for (let i = 0; i < count; i++) {
    const row = {} as KeySnapshot;
    SNAPSHOT_FIELDS.forEach((f, j) => (row[f] = String(flat[i * SNAPSHOT_FIELDS.length + j] ?? '')));
    out.push(row);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Retreat: the admission gate (token bucket) and the outcome recorder (window + state machine)
// ---------------------------------------------------------------------------------------------

/** A gate with a fixed number of KEYS and ARGV (the relay's `StaticGate` shape). */
export interface FixedShapeGate extends AdmissionGate {
  keyCount: number;
  argCount: number;
}

export const RETREAT_GATE_CODE = 'provider_rate';

/** Lua: computes `rate` (tokens per ms), `cap` of the provider's bucket, or returns nil (no bucket). */
const LUA_BUCKET_PARAMS = `
local rt = GK[1]
local base, burst, enabled = tonumber(GA[1]) or 0, tonumber(GA[2]) or 0, GA[3] == '1'
local st, f = 0, 1000
if enabled then
  st = tonumber(redis.call('HGET', rt, 'st')) or 0
  if st ~= 0 then f = tonumber(redis.call('HGET', rt, 'f')) or 1000 end
end
if base <= 0 then
  if st == 0 then return nil end
  base = tonumber(redis.call('HGET', rt, 'ob')) or 0
  if base <= 0 then return nil end
end
local cap0 = burst
if cap0 <= 0 then cap0 = math.max(1, math.ceil(base / 60)) end
local rate = (base * f / 1000) / 60000
local cap = math.max(1, math.floor(cap0 * f / 1000))
`;

function localBucket(db: LocalDb, keys: string[], args: string[]) {
  const rt = keys[0]!;
  const enabled = args[2] === '1';
  let st = 0;
  let f = 1000;
  if (enabled) {
    st = n(db.hget(rt, 'st'), 0);
    if (st !== 0) f = n(db.hget(rt, 'f'), 1000);
  }
  return bucketParams(n(args[0], 0), n(args[1], 0), st, f, n(db.hget(rt, 'ob'), 0));
}

/**
 * The provider's token bucket as an admission gate composed into KeyPool's selection script.
 * KEYS: [ad:{p}:rt]. ARGV: [baseRpm (0 = none), burst (0 = one second's worth), retreat enabled 1|0].
 * The effective rate (base × the shared retreat factor) and capacity (burst × factor) are read from
 * the store in the same step, so every instance shares one bucket and one retreat state.
 * check: refills, refuses with [provider_rate, ms until a token] when empty; commit: takes the token.
 */
export const RETREAT_GATE: FixedShapeGate = {
  name: 'retreat',
  keyCount: 1,
  argCount: 3,
  checkLua: `${LUA_BUCKET_PARAMS}
local tk = tonumber(redis.call('HGET', rt, 'tk'))
local ts = tonumber(redis.call('HGET', rt, 'ts'))
if tk == nil or ts == nil then tk = cap; ts = now end
if now > ts then tk = tk + (now - ts) * rate end
if tk > cap then tk = cap end
redis.call('HSET', rt, 'tk', tk, 'ts', now)
redis.call('PEXPIRE', rt, ${RT_TTL_MS})
if tk < 1 then return {'${RETREAT_GATE_CODE}', math.ceil((1 - tk) / rate)} end
return nil`,
  commitLua: `${LUA_BUCKET_PARAMS}
local tk = tonumber(redis.call('HGET', rt, 'tk')) or cap
redis.call('HSET', rt, 'tk', tk - 1)
return nil`,
  check(db, keys, args, now) {
    const b = localBucket(db, keys, args);
    if (!b) return null;
    const rt = keys[0]!;
    let tk = Number(db.hget(rt, 'tk') ?? NaN);
    let ts = Number(db.hget(rt, 'ts') ?? NaN);
    if (Number.isNaN(tk) || Number.isNaN(ts)) {
      tk = b.cap;
      ts = now;
    }
    if (now > ts) tk = tk + (now - ts) * b.ratePerMs;
    if (tk > b.cap) tk = b.cap;
    db.hset(rt, { tk, ts: now });
    db.pexpire(rt, RT_TTL_MS);
    if (tk < 1) return [RETREAT_GATE_CODE, Math.ceil((1 - tk) / b.ratePerMs)];
    return null;
  },
  commit(db, keys, args) {
    const b = localBucket(db, keys, args);
    if (!b) return;
    const rt = keys[0]!;
    const tk = n(db.hget(rt, 'tk'), b.cap);
    db.hset(rt, { tk: tk - 1 });
  },
};

/**
 * Adds answers to the provider's window and runs the state machine once. A cut (enter, deeper cut,
 * back to RETREAT) empties the bucket: the burst saved up at the old rate is dropped.
 * KEYS: [ad:{p}:rt, ad:{p}:rw]. ARGV: [n, e, windowMs, minSamples, enter‱, exit‱, holdMs, factor‰,
 * minFactor‰, step‰, stepMs, baseRpm, enabled 1|0].
 * → [state, factor‰, answers in window, 429s in window, event, previous state, base rpm used, accepted rpm]
 */
export type RecordResult = [number, number, number, number, string, number, number, number];

const LUA_WINDOW = `
local function fg_window(rw, now, windowMs, addN, addE)
  local slotMs = math.ceil(windowMs / ${WINDOW_SLOTS})
  local cur = math.floor(now / slotMs)
  if addN > 0 then
    local i = cur % ${WINDOW_SLOTS}
    if tonumber(redis.call('HGET', rw, 's' .. i)) ~= cur then
      redis.call('HSET', rw, 's' .. i, cur, 'n' .. i, 0, 'e' .. i, 0)
    end
    redis.call('HINCRBY', rw, 'n' .. i, addN)
    if addE > 0 then redis.call('HINCRBY', rw, 'e' .. i, addE) end
    redis.call('PEXPIRE', rw, windowMs * 2 + 1000)
  end
  local N, E = 0, 0
  local all = redis.call('HGETALL', rw)
  local h = {}
  for j = 1, #all, 2 do h[all[j]] = tonumber(all[j + 1]) end
  for i = 0, ${WINDOW_SLOTS - 1} do
    local sid = h['s' .. i]
    if sid ~= nil and sid > cur - ${WINDOW_SLOTS} and sid <= cur then
      N = N + (h['n' .. i] or 0)
      E = E + (h['e' .. i] or 0)
    end
  end
  return N, E
end
`;

function localWindow(db: LocalDb, rw: string, now: number, windowMs: number, addN: number, addE: number) {
  const slotMs = Math.ceil(windowMs / WINDOW_SLOTS);
  const cur = Math.floor(now / slotMs);
  if (addN > 0) {
    const i = cur % WINDOW_SLOTS;
    if (n(db.hget(rw, `s${i}`), NaN) !== cur) db.hset(rw, { [`s${i}`]: cur, [`n${i}`]: 0, [`e${i}`]: 0 });
    db.hincrby(rw, `n${i}`, addN);
    if (addE > 0) db.hincrby(rw, `e${i}`, addE);
    db.pexpire(rw, windowMs * 2 + 1000);
  }
  const h = db.hgetall(rw);
  let N = 0;
  let E = 0;
  for (let i = 0; i < WINDOW_SLOTS; i++) {
    const sid = h[`s${i}`] !== undefined ? Number(h[`s${i}`]) : NaN;
    if (!Number.isNaN(sid) && sid > cur - WINDOW_SLOTS && sid <= cur) {
      N += Number(h[`n${i}`] ?? 0);
      E += Number(h[`e${i}`] ?? 0);
    }
  }
  return { N, E };
}

const RETREAT_FIELDS = ['st', 'f', 'since', 'cut', 'calm', 'step', 'ob'] as const;

export const retreatRecordScript: AtomicScript<RecordResult> = {
  name: 'adaptive-retreat-record',
  lua: `${LUA_NOW}${LUA_WINDOW}
local rt, rw = KEYS[1], KEYS[2]
local A = {}
for i = 1, 13 do A[i] = tonumber(ARGV[i]) or 0 end
local addN, addE, windowMs, minSamples, enterP, exitP, holdMs, factorP, minFactorP, stepP, stepMs, baseRpm = A[1], A[2], A[3], A[4], A[5], A[6], A[7], A[8], A[9], A[10], A[11], A[12]
local enabled = ARGV[13] == '1'
local N, E = fg_window(rw, now, windowMs, addN, addE)
local raw = redis.call('HMGET', rt, 'st', 'f', 'since', 'cut', 'calm', 'step', 'ob')
local st, f, since, cut, calm, step, ob = tonumber(raw[1]) or 0, tonumber(raw[2]) or 1000, tonumber(raw[3]) or 0, tonumber(raw[4]) or 0, tonumber(raw[5]) or 0, tonumber(raw[6]) or 0, tonumber(raw[7]) or 0
local prev = st
local accepted = math.floor((N - E) * 60000 / windowMs)
local observed = math.floor(N * 60000 / windowMs)
local base = baseRpm
if base <= 0 then base = ob end
local event = ''
local function cutFrom(fc, b)
  local a = math.floor(fc * factorP / 1000)
  local c = math.floor(accepted * ${ACCEPTED_MARGIN_PERMILLE} / b)
  if c < a then a = c end
  if a < minFactorP then a = minFactorP end
  return a
end
if not enabled then
  if st ~= 0 then st = 0; f = 1000; since = now; cut = 0; calm = 0; step = 0; ob = 0; event = 'disabled' end
else
  local enter = N >= minSamples and E * 10000 > enterP * N
  local below = E == 0 or E * 10000 < exitP * N
  if st == 0 then
    if enter then
      if baseRpm <= 0 then ob = math.max(1, observed); base = ob end
      f = cutFrom(1000, base); st = 1; since = now; cut = now; calm = 0; event = 'enter'
    end
  elseif st == 1 then
    if enter and now - cut >= windowMs then
      f = math.min(f, cutFrom(f, math.max(1, base))); cut = now; calm = 0; event = 'cut'
    elseif below then
      if calm == 0 then calm = now end
      if now - calm >= holdMs then st = 2; since = now; step = now; calm = 0; event = 'recover' end
    else
      calm = 0
    end
  elseif enter then
    f = math.min(f, cutFrom(f, math.max(1, base))); st = 1; since = now; cut = now; calm = 0; event = 'retreat'
  elseif below and now - step >= stepMs then
    f = math.min(1000, f + stepP); step = now; event = 'step'
    if f >= 1000 then st = 0; f = 1000; since = now; ob = 0; event = 'normal' end
  end
end
redis.call('HSET', rt, 'st', st, 'f', f, 'since', since, 'cut', cut, 'calm', calm, 'step', step, 'ob', ob)
if event == 'enter' or event == 'cut' or event == 'retreat' then redis.call('HSET', rt, 'tk', 0, 'ts', now) end
redis.call('PEXPIRE', rt, ${RT_TTL_MS})
return {st, f, N, E, event, prev, base, accepted}
`,
  local(db, keys, args, now) {
    const [rt, rw] = keys as [string, string];
    const A = args.map((a) => n(a, 0));
    const { N, E } = localWindow(db, rw, now, A[2]!, A[0]!, A[1]!);
    const raw = RETREAT_FIELDS.map((f) => db.hget(rt, f));
    const s0: RetreatState = {
      st: n(raw[0], 0),
      f: n(raw[1], 1000),
      since: n(raw[2], 0),
      cut: n(raw[3], 0),
      calm: n(raw[4], 0),
      step: n(raw[5], 0),
      ob: n(raw[6], 0),
    };
    const r = stepRetreat(s0, N, E, A[11]!, now, {
      windowMs: A[2]!,
      minSamples: A[3]!,
      enterPermyriad: A[4]!,
      exitPermyriad: A[5]!,
      holdMs: A[6]!,
      factorPermille: A[7]!,
      minFactorPermille: A[8]!,
      stepPermille: A[9]!,
      stepMs: A[10]!,
      enabled: args[12] === '1',
    });
    const s = r.event === 'disabled' ? { ...emptyRetreatState(), since: now } : r.state;
    db.hset(rt, { st: s.st, f: s.f, since: s.since, cut: s.cut, calm: s.calm, step: s.step, ob: s.ob });
    // A cut takes effect at once: the burst saved up at the old rate is dropped.
    if (r.event === 'enter' || r.event === 'cut' || r.event === 'retreat') db.hset(rt, { tk: 0, ts: now });
    db.pexpire(rt, RT_TTL_MS);
    return [s.st, s.f, N, E, r.event, s0.st, r.base, r.acceptedRpm];
  },
};

/**
 * Read-only view of a provider's retreat state and bucket. KEYS: [rt, rw]. ARGV: [windowMs].
 * → [st, f, N, E, since, ob, tk ('' = full), ts, now]
 */
export const retreatSnapshotScript: AtomicScript<string[]> = {
  name: 'adaptive-retreat-snapshot',
  lua: `${LUA_NOW}${LUA_WINDOW}
local N, E = fg_window(KEYS[2], now, tonumber(ARGV[1]), 0, 0)
local raw = redis.call('HMGET', KEYS[1], 'st', 'f', 'since', 'ob', 'tk', 'ts')
return {raw[1] or '0', raw[2] or '1000', tostring(N), tostring(E), raw[3] or '0', raw[4] or '0', raw[5] or '', raw[6] or '', tostring(now)}
`,
  local(db, keys, args, now) {
    const { N, E } = localWindow(db, keys[1]!, now, n(args[0], 60000), 0, 0);
    const rt = keys[0]!;
    return [
      db.hget(rt, 'st') ?? '0',
      db.hget(rt, 'f') ?? '1000',
      String(N),
      String(E),
      db.hget(rt, 'since') ?? '0',
      db.hget(rt, 'ob') ?? '0',
      db.hget(rt, 'tk') ?? '',
      db.hget(rt, 'ts') ?? '',
      String(now),
    ];
  },
};

export { NORMAL };
