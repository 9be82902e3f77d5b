import type { LocalDb } from '../../state/local-db.js';

/**
 * A sliding window of sub-buckets (issue 18: the cost of a sliding log grows with the limit; a
 * large limit gets counters instead): an upstream key's TPM window (`:tpb`, TPM_EXACT_MAX) and RPM
 * window (`:rpb`, RPM_EXACT_MAX). One hash per window:
 *   <bucket id>  amount charged in that bucket (id = floor(ms / BUCKET_MS), decimal)
 *   s            the sum of every bucket field present
 *   lo           the lowest bucket id that may still be present
 * A charge is one HINCRBY of its bucket and one of `s` (the hash's TTL is renewed, and `lo` set,
 * only when the charge opens a new bucket: once per BUCKET_MS per key, which also deletes the
 * buckets that left the window). A read (`wbSum`) is one HMGET of `s` and `lo`; buckets that have
 * left the window are deleted (and taken off `s`) only when `lo` says there are some: once per
 * bucket boundary, not per request.
 *
 * Error bound (tested in test/key-pool/window-buckets.e2e-spec.ts): the window counts every bucket
 * whose id is >= floor(now / BUCKET_MS) - BUCKETS, i.e. everything charged in the last WINDOW_MS
 * (what the exact log counts) plus what was charged in the part of the oldest bucket that lies
 * before now - WINDOW_MS: less than BUCKET_MS of traffic. It never counts less than the exact log,
 * so a limit enforced on it is never exceeded over any WINDOW_MS; a key that is at its limit may be
 * refused (and told to retry) up to BUCKET_MS later than the exact log would. With 60 s windows of
 * 1 s buckets: a window between 60 and 61 s long (≤ 1.7 % of a steady rate).
 */
export const BUCKET_MS = 1000;
export const WINDOW_BUCKETS = 60;
/** TTL of a window hash, renewed when a charge opens a bucket (the newest bucket counts ≤ WINDOW + BUCKET). */
export const BUCKET_HASH_TTL_MS = BUCKET_MS * (WINDOW_BUCKETS + 1) + 1000;
/**
 * Where the exact log stays: an upstream key whose max_tpm is at most this keeps the sorted-set log
 * of charges (few charges fit in such a budget, and its refusal time is exact); a larger max_tpm,
 * or none (the window is then only read for usage), uses the sub-bucket window.
 */
export const TPM_EXACT_MAX = 10_000;

/**
 * The same for the RPM window: a max_rpm up to this keeps the exact log (one sorted-set member per
 * admitted request); a larger one counts requests in sub-buckets.
 */
export const RPM_EXACT_MAX = 1000;

/** The key's RPM window is a sub-bucket window (else the exact log; null = no RPM window at all). */
export function rpmBucketed(maxRpm: number | null | undefined): boolean {
  return !!maxRpm && maxRpm > RPM_EXACT_MAX;
}

/** The key's TPM window is a sub-bucket window (else the exact log). */
export function tpmBucketed(maxTpm: number | null | undefined): boolean {
  return !maxTpm || maxTpm > TPM_EXACT_MAX;
}

/** Lua library: fg_wb_add(wk, now, amount), fg_wb_sum(wk, now) → sum, fg_wb_ready(wk, now, limit) → ms. */
export const LUA_WINDOW_BUCKETS = `
-- deletes the buckets below \`first\` (they left the window), takes them off s; returns the new s
local function fg_wb_trim(wk, first, s)
  local all = redis.call('HGETALL', wk)
  local dead, newLo = {}, nil
  for j = 1, #all, 2 do
    local f = all[j]
    if f ~= 's' and f ~= 'lo' then
      local id = tonumber(f)
      if id < first then s = s - tonumber(all[j + 1]); dead[#dead + 1] = f
      elseif newLo == nil or id < newLo then newLo = id end
    end
  end
  if newLo == nil then redis.call('DEL', wk); return 0 end
  if #dead > 0 then redis.call('HDEL', wk, unpack(dead)) end
  redis.call('HSET', wk, 's', s, 'lo', newLo)
  return s
end
local function fg_wb_add(wk, now, amount)
  local id = math.floor(now / ${BUCKET_MS})
  if redis.call('HINCRBY', wk, tostring(id), amount) == amount then
    -- a new bucket (once per ${BUCKET_MS} ms): the TTL, the lowest id, the buckets that left
    redis.call('PEXPIRE', wk, ${BUCKET_HASH_TTL_MS})
    local lo = tonumber(redis.call('HGET', wk, 'lo') or '')
    if lo == nil or id < lo then redis.call('HSET', wk, 'lo', id)
    elseif lo < id - ${WINDOW_BUCKETS} then fg_wb_trim(wk, id - ${WINDOW_BUCKETS}, tonumber(redis.call('HGET', wk, 's') or '0') or 0) end
  end
  redis.call('HINCRBY', wk, 's', amount)
end
local function fg_wb_sum(wk, now)
  local first = math.floor(now / ${BUCKET_MS}) - ${WINDOW_BUCKETS}
  local h = redis.call('HMGET', wk, 's', 'lo')
  local s = tonumber(h[1] or '0') or 0
  local lo = tonumber(h[2] or '')
  if lo == nil or lo >= first then return s end
  return fg_wb_trim(wk, first, s)
end
-- gives back one unit charged at \`at\` (a request never sent), if its bucket is still there
local function fg_wb_give(wk, at)
  local id = tostring(math.floor(at / ${BUCKET_MS}))
  local v = tonumber(redis.call('HGET', wk, id) or '')
  if v ~= nil and v > 0 then
    redis.call('HINCRBY', wk, id, -1)
    redis.call('HINCRBY', wk, 's', -1)
  end
end
-- when a window holding sum >= limit gets below it: the end of the oldest buckets' time in it
local function fg_wb_ready(wk, now, sum, limit)
  local all = redis.call('HGETALL', wk)
  local ids = {}
  for j = 1, #all, 2 do
    if all[j] ~= 's' and all[j] ~= 'lo' then ids[#ids + 1] = {tonumber(all[j]), tonumber(all[j + 1])} end
  end
  table.sort(ids, function(a, b) return a[1] < b[1] end)
  for _, e in ipairs(ids) do
    sum = sum - e[2]
    if sum < limit then return (e[1] + ${WINDOW_BUCKETS} + 1) * ${BUCKET_MS} end
  end
  return now + ${BUCKET_MS * WINDOW_BUCKETS}
end
`;

const META = new Set(['s', 'lo']);

function wbTrim(db: LocalDb, wk: string, first: number, s: number): number {
  let newLo: number | null = null;
  const dead: string[] = [];
  for (const [f, v] of Object.entries(db.hgetall(wk))) {
    if (META.has(f)) continue;
    const id = Number(f);
    if (id < first) {
      s -= Number(v);
      dead.push(f);
    } else if (newLo === null || id < newLo) newLo = id;
  }
  if (newLo === null) {
    db.del(wk);
    return 0;
  }
  for (const f of dead) db.hdel(wk, f);
  db.hset(wk, { s, lo: newLo });
  return s;
}

/** TypeScript twin of fg_wb_add. */
export function wbAdd(db: LocalDb, wk: string, now: number, amount: number): void {
  const id = Math.floor(now / BUCKET_MS);
  if (db.hincrby(wk, String(id), amount) === amount) {
    db.pexpire(wk, BUCKET_HASH_TTL_MS);
    const lo = Number(db.hget(wk, 'lo') ?? NaN);
    if (Number.isNaN(lo) || id < lo) db.hset(wk, { lo: id });
    else if (lo < id - WINDOW_BUCKETS)
      wbTrim(db, wk, id - WINDOW_BUCKETS, Number(db.hget(wk, 's') ?? '0') || 0);
  }
  db.hincrby(wk, 's', amount);
}

/** TypeScript twin of fg_wb_sum. */
export function wbSum(db: LocalDb, wk: string, now: number): number {
  const first = Math.floor(now / BUCKET_MS) - WINDOW_BUCKETS;
  const s = Number(db.hget(wk, 's') ?? '0') || 0;
  const lo = Number(db.hget(wk, 'lo') ?? NaN);
  if (Number.isNaN(lo) || lo >= first) return s;
  return wbTrim(db, wk, first, s);
}

/** TypeScript twin of fg_wb_give. */
export function wbGive(db: LocalDb, wk: string, at: number): void {
  const id = String(Math.floor(at / BUCKET_MS));
  const raw = db.hget(wk, id);
  const v = raw === null || raw === '' ? NaN : Number(raw);
  if (!Number.isNaN(v) && v > 0) {
    db.hincrby(wk, id, -1);
    db.hincrby(wk, 's', -1);
  }
}

/** TypeScript twin of fg_wb_ready. */
export function wbReady(db: LocalDb, wk: string, now: number, sum: number, limit: number): number {
  const ids = Object.entries(db.hgetall(wk))
    .filter(([f]) => !META.has(f))
    .map(([f, v]) => [Number(f), Number(v)] as const)
    .sort((a, b) => a[0] - b[0]);
  for (const [id, v] of ids) {
    sum -= v;
    if (sum < limit) return (id + WINDOW_BUCKETS + 1) * BUCKET_MS;
  }
  return now + BUCKET_MS * WINDOW_BUCKETS;
}

/** Read-only: the window's sum at `now` (buckets that left it are not counted, nothing is written). */
export function wbPeek(all: Record<string, string>, now: number): number {
  const first = Math.floor(now / BUCKET_MS) - WINDOW_BUCKETS;
  let s = 0;
  for (const [f, v] of Object.entries(all)) if (!META.has(f) && Number(f) >= first) s += Number(v);
  return s;
}
