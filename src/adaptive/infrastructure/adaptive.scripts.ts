import { LEARNED_LIMIT_FIELD, type AdmissionGate } from '../../key-pool/key-pool.types.js';
import type { AtomicScript } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { bucketParams, NORMAL, WINDOW_SLOTS } from '../domain/retreat-machine.js';

/**
 * Adaptive's atomic steps, each written twice (Redis Lua / LocalDb) per docs/CONVENTIONS.md. The
 * learning step (adaptive-learn) is in learn.script.ts + learn.lua; the per-answer step (retreat
 * window + state machine + learning, composed into KeyPool's release script) in report.script.ts +
 * report.lua.
 *
 * Store layout (every key of a provider shares the hash tag {providerId} with KeyPool's keys):
 *   kp:{p}:k:<id>   KeyPool's key hash; Adaptive owns field `cl` (the learned limit, read by the
 *                   selection script in the same atomic step as the slot is taken)
 *   ad:{p}:k:<id>   hash  ll copy of the learned limit, v version (ms), c/r/t/u 429 counts (concurrency/rpm/tpm/unknown), l4 last 429
 *                         (ms), lt its type, lc last concurrency 429 (ms), bd boundary (lowest in-flight
 *                         count a concurrency 429 happened at since the last probe), hold (ms), lp last probe (ms), h history (last 20),
 *                         sg the limit before the last slow-start step (until the first push-back)
 *   ad:{p}:rt       hash  retreat bucket: st state, f factor ‰, since, cut, calm, step, ob observed
 *                         base rpm, tk tokens, ts last refill (ms)
 *   ad:{p}:rw       hash  sliding window of upstream answers: 10 slots s<i> slot id, n<i> answers, e<i> 429s
 */
export { adaptiveKeyStateKey, learnKeys, retreatStateKey, retreatWindowKey } from './store-keys.js';
export {
  decodeLearn,
  encodeLearn,
  HISTORY_MAX,
  KEY_STATE_TTL_MS,
  learnScript,
  type LearnOp,
  type LearnReply,
  type LearnResult,
} from './learn.script.js';

import { RT_TTL_MS } from './report.script.js';

const LUA_NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`;

function n(v: string | null | undefined, d: number): number {
  if (v === null || v === undefined || v === '') return d;
  const x = Number(v);
  return Number.isNaN(x) ? d : x;
}

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

/**
 * Lua: computes `rate` (tokens per ms), `cap` of the provider's bucket from ONE read of the retreat
 * hash (h = st, f, ob, tk, ts), or returns nil (no bucket). `fg_gate_memo` is a table the composer
 * (KeyPool's providerLua) declares once per script call: the check leaves there what the commit
 * needs (false: no bucket; a number: the tokens it left in the hash), so the commit reads nothing.
 */
const LUA_BUCKET_PARAMS = `
local rt = GK[1]
local base, burst, enabled = tonumber(GA[1]) or 0, tonumber(GA[2]) or 0, GA[3] == '1'
local h = redis.call('HMGET', rt, 'st', 'f', 'ob', 'tk', 'ts')
local st, f = 0, 1000
if enabled then
  st = tonumber(h[1]) or 0
  if st ~= 0 then f = tonumber(h[2]) or 1000 end
end
if base <= 0 then
  if st == 0 then fg_gate_memo.retreat = false; return nil end
  base = tonumber(h[3]) or 0
  if base <= 0 then fg_gate_memo.retreat = false; return nil end
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
local tk = tonumber(h[4])
local ts = tonumber(h[5])
if tk == nil or ts == nil then tk = cap; ts = now end
if now > ts then tk = tk + (now - ts) * rate end
if tk > cap then tk = cap end
redis.call('HSET', rt, 'tk', tk, 'ts', now)
redis.call('PEXPIRE', rt, ${RT_TTL_MS})
if tk < 1 then return {'${RETREAT_GATE_CODE}', math.ceil((1 - tk) / rate)} end
fg_gate_memo.retreat = tk
return nil`,
  commitLua: `
local m = fg_gate_memo.retreat
if m == false then return nil end
if m ~= nil then redis.call('HSET', GK[1], 'tk', m - 1); return nil end
${LUA_BUCKET_PARAMS}
local tk = tonumber(h[4]) or cap
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

// The recorder (answers into the window + the state machine) is Adaptive's report contribution,
// composed into KeyPool's release script: report.script.ts + report.lua.
export { retreatRecordScript, type RecordResult } from './report.script.js';

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
