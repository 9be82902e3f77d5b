import type { AtomicScript, ScriptValue } from '../../state/atomic-store.js';
import type { LocalDb } from '../../state/local-db.js';
import { keyInFlightKey, keyStateKey, type AdmissionGate, type ConcurrencyLimit } from '../key-pool.types.js';
import {
  BUCKET_MS,
  LUA_WINDOW_BUCKETS,
  RPM_EXACT_MAX,
  TPM_EXACT_MAX,
  WINDOW_BUCKETS,
  rpmBucketed,
  tpmBucketed,
  wbAdd,
  wbPeek,
  wbReady,
  wbSum,
} from './window-buckets.js';

/**
 * The KeyPool's atomic steps, each written twice (Redis Lua / LocalDb), see docs/key-pool.md.
 *
 * Store layout per upstream key (all keys of a provider share the hash tag {providerId}):
 *   kp:{p}:k:<id>       hash   cd = cooldown until (ms), ts = tokens in the exact TPM log,
 *                              cl = learned concurrency limit, rx = when the selection last renewed the hash's TTL
 *   kp:{p}:k:<id>:rpm   zset   one member per admitted request (leaseId), score = admission time; kept only with
 *                              a max_rpm <= RPM_EXACT_MAX (the exact RPM log)
 *   kp:{p}:k:<id>:rpb   hash   the RPM window as sub-buckets (window-buckets.ts) for a larger max_rpm
 *   kp:{p}:k:<id>:tpm   zset   one member per charged response ("leaseId:tokens"), score = report time;
 *                              the exact TPM log, kept only for a max_tpm <= TPM_EXACT_MAX
 *   kp:{p}:k:<id>:tpb   hash   the TPM window as sub-buckets (window-buckets.ts) for every other key
 *                              (a larger max_tpm, or none: then only read for usage)
 *   kp:{p}:k:<id>:inf   zset   in-flight leases, score = lease expiry
 *   kp:{p}:seq          string provider-wide use counter (LRU order that is exact across instances)
 *   kp:{p}:lru          zset   member = key id, score = the seq of its last selection (a key not in it: 0);
 *                              replaces the hash field lu (read per candidate before)
 *
 * INVARIANT of the selection script: for every key, the number of members of its rpm set with a score
 * in (now - 60 s, now] never exceeds max_rpm, because the only writer of that set is this script, it
 * trims and counts before adding, and it runs atomically (one Lua script on one Redis / one
 * synchronous function in process). The same holds for in-flight leases and the concurrency limit.
 */
export const WINDOW_MS = 60_000;
/**
 * The exact RPM log is trimmed lazily: only when its oldest entry is more than RPM_LOG_SLACK_MS out
 * of the window (the count reads the window with ZCOUNT, so older entries never count), and its TTL
 * (RPM_LOG_TTL_MS = 2 windows + the slack) is renewed then, when the log is created, and when an
 * entry is taken out (ZREM) — not per request. Why that never drops a live entry: a request at t
 * that renews nothing found the oldest entry o > t − window − slack, and the last renewal came at
 * or after o was added, so the log lives until at least o + 2·window + slack > t + window.
 */
export const RPM_LOG_SLACK_MS = 1000;
export const RPM_LOG_TTL_MS = 2 * WINDOW_MS + RPM_LOG_SLACK_MS;
/** Retry hint when every key is at its concurrency limit (a slot frees when any request ends). */
export const SATURATED_RETRY_MS = 1000;

export const CANDIDATE_KEY_STRIDE = 4;
export const CANDIDATE_ARG_STRIDE = 7;

/**
 * The four keys of an upstream key the scripts take: hash, rpm, the TPM window (the exact log
 * `:tpm`, or the sub-bucket window `:tpb` when `tpmBuckets`: see `tpmBucketed(maxTpm)`), inf.
 */
export function keyNames(
  providerId: string,
  keyId: string,
  tpmBuckets = false,
  rpmBuckets = false,
): [string, string, string, string] {
  const hash = keyStateKey(providerId, keyId);
  return [
    hash,
    `${hash}:${rpmBuckets ? 'rpb' : 'rpm'}`,
    `${hash}:${tpmBuckets ? 'tpb' : 'tpm'}`,
    keyInFlightKey(providerId, keyId),
  ];
}

/** Every state key of an upstream key (snapshot, clear): hash, rpm log, tpm log, inf, tpm buckets, rpm buckets. */
export function allKeyNames(
  providerId: string,
  keyId: string,
): [string, string, string, string, string, string] {
  const [hash, rpm, tpm, inf] = keyNames(providerId, keyId);
  return [hash, rpm, tpm, inf, `${hash}:tpb`, `${hash}:rpb`];
}

export function sequenceKey(providerId: string): string {
  return `kp:{${providerId}}:seq`;
}

/** The provider's LRU set: member = key id, score = the `seq` value of the key's last selection. */
export function lruKey(providerId: string): string {
  return `kp:{${providerId}}:lru`;
}

export interface SelectionCandidate {
  keyId: string;
  priority: number;
  maxRpm: number | null;
  maxTpm: number | null;
  concurrency: ConcurrencyLimit;
  /** cooldown_until from Postgres (ms); the store's own value wins when later. */
  dbCooldownUntilMs: number;
}

/**
 * A provider's state key names, built once (selectionInputs runs on every admission): the same string
 * objects each time, so neither the concatenation nor — embedded — LocalDb's hashing of a fresh
 * string is paid per request. Per key: hash, rpm, tpm, inf, rpb, tpb. Bounded (cleared when full).
 */
interface ProviderNames {
  seq: string;
  lru: string;
  keys: Map<string, [string, string, string, string, string, string]>;
}
const NAME_CACHE_MAX = 10_000;
const providerNameCache = new Map<string, ProviderNames>();

function providerNames(providerId: string): ProviderNames {
  let names = providerNameCache.get(providerId);
  if (!names) {
    if (providerNameCache.size >= NAME_CACHE_MAX) providerNameCache.clear();
    names = { seq: sequenceKey(providerId), lru: lruKey(providerId), keys: new Map() };
    providerNameCache.set(providerId, names);
  }
  return names;
}

/**
 * A key's state key names from the provider's name cache (the same string objects each time):
 * hash, rpm, tpm, inf, rpb, tpb. Read-only: shared by every caller.
 */
export function cachedKeyNames(
  providerId: string,
  keyId: string,
): readonly [string, string, string, string, string, string] {
  return namesOf(providerNames(providerId), providerId, keyId);
}

function namesOf(
  names: ProviderNames,
  providerId: string,
  keyId: string,
): [string, string, string, string, string, string] {
  let k = names.keys.get(keyId);
  if (!k) {
    const [hash, rpm, tpm, inf] = keyNames(providerId, keyId);
    k = [hash, rpm, tpm, inf, `${hash}:rpb`, `${hash}:tpb`];
    if (names.keys.size >= NAME_CACHE_MAX) names.keys.clear();
    names.keys.set(keyId, k);
  }
  return k;
}

/** KEYS and ARGV of the selection part. Candidates must be sorted by priority (ascending). */
export function selectionInputs(
  providerId: string,
  candidates: readonly SelectionCandidate[],
  leaseId: string,
  leaseTtlMs: number,
  hashTtlMs: number,
): { keys: string[]; args: string[] } {
  const names = providerNames(providerId);
  const keys = [names.seq, names.lru];
  const args = [leaseId, String(leaseTtlMs), String(hashTtlMs), String(candidates.length)];
  for (const c of candidates) {
    const k = namesOf(names, providerId, c.keyId);
    keys.push(k[0], rpmBucketed(c.maxRpm) ? k[4] : k[1], tpmBucketed(c.maxTpm) ? k[5] : k[2], k[3]);
    const mode = c.concurrency.kind === 'fixed' ? 1 : c.concurrency.kind === 'learned' ? 2 : 0;
    const value =
      c.concurrency.kind === 'fixed'
        ? c.concurrency.limit
        : c.concurrency.kind === 'learned'
          ? c.concurrency.initial
          : 0;
    args.push(
      c.keyId,
      String(c.priority),
      String(c.maxRpm ?? 0),
      String(c.maxTpm ?? 0),
      String(mode),
      String(Math.max(0, Math.floor(value))),
      String(Math.floor(c.dbCooldownUntilMs)),
    );
  }
  return { keys, args };
}

/**
 * Result: `[1, index (1-based), inFlight, nowMs, gateOutput?]` or `[0, kind, retryMs, nCooling, nRateLimited, nSaturated]`
 * (kind: cooling | rate_limited | saturated | no_usable_keys | gate:<code>; gateOutput: the string
 * the gate's commit returned, if any).
 */
export type SelectionResult =
  | [1, number, number, number]
  | [1, number, number, number, string]
  | [0, string, number, number, number, number];

// ---------------------------------------------------------------------------------------------
// Lua half
// ---------------------------------------------------------------------------------------------

const LUA_HELPERS = `${LUA_WINDOW_BUCKETS}
local function fg_tokens(member)
  return tonumber(string.match(member, ':(%d+)$') or '0') or 0
end
-- Trims the TPM log to the window and returns the tokens still in it (the running sum in hash field ts).
local function fg_tpm_sum(hk, tk, cutoff)
  local before = tonumber(redis.call('HGET', hk, 'ts') or '0') or 0
  local sum = before
  local old = redis.call('ZRANGEBYSCORE', tk, '-inf', cutoff)
  if #old > 0 then
    for _, m in ipairs(old) do sum = sum - fg_tokens(m) end
    redis.call('ZREMRANGEBYSCORE', tk, '-inf', cutoff)
  end
  if sum < 0 or redis.call('EXISTS', tk) == 0 then sum = 0 end
  if sum ~= before then redis.call('HSET', hk, 'ts', sum) end
  return sum
end
-- The block the last fg_select took (ADMISSION_GRANTS, docs/scaling.md "Local admission grants"):
-- n units of the chosen key's RPM window and concurrency, 1 unless a block was asked for and fit.
local fg_block_out = {n = 1}
local function fg_now()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`;

const LUA_SELECT = `
-- K/A: the caller's KEYS/ARGV; the selection's part starts after ko keys / ao args (read in place,
-- not copied). The candidates' LRU sequences come from the provider's LRU set in one ZMSCORE; each
-- priority group is then walked in LRU order and the first usable key wins, so an uncontended
-- request looks at one key (one HMGET of cd, rx [, cl] and one ZCOUNT of its live leases), not at
-- every key. Refusals (no usable key) have visited every key, as before. The commit adds the lease
-- to the count the walk took; the chosen key's expired leases (never counted: ZCOUNT above now) are
-- trimmed only when the hash's TTL is renewed (rx), not per request.
local function fg_select(K, A, now, ko, ao, block)
  local call = redis.call
  fg_block_out.n = 1
  local leaseId = A[ao + 1]
  local leaseTtl = tonumber(A[ao + 2])
  local hashTtl = tonumber(A[ao + 3])
  local n = tonumber(A[ao + 4])
  local cutoff = now - ${WINDOW_MS}
  local lk = K[ko + 2]
  local lu = {}
  if n > 0 then
    local ids = {}
    for i = 0, n - 1 do ids[i + 1] = A[ao + 5 + ${CANDIDATE_ARG_STRIDE} * i] end
    local raw = call('ZMSCORE', lk, unpack(ids))
    for i = 1, n do lu[i] = tonumber(raw[i]) or 0 end
  end
  local best, bestCount, bestRx, bestFresh = nil, nil, nil, false
  local bestRpm, bestTpm, bestLimit = 0, 0, 0
  local earliest, earliestKind = nil, nil
  local nCool, nRate, nBusy = 0, 0, 0
  local g = 0
  while best == nil and g < n do
    -- the priority group g..e, in LRU order (ties: candidate order)
    local pri = A[ao + 6 + ${CANDIDATE_ARG_STRIDE} * g]
    local e = g
    while e + 1 < n and A[ao + 6 + ${CANDIDATE_ARG_STRIDE} * (e + 1)] == pri do e = e + 1 end
    local order = {}
    for i = g, e do order[#order + 1] = i end
    if e > g then
      table.sort(order, function(x, y)
        if lu[x + 1] ~= lu[y + 1] then return lu[x + 1] < lu[y + 1] end
        return x < y
      end)
    end
    for _, i in ipairs(order) do
      local a = ao + 5 + ${CANDIDATE_ARG_STRIDE} * i
      local k = ko + 3 + ${CANDIDATE_KEY_STRIDE} * i
      local hk = K[k]
      local maxRpm, maxTpm = tonumber(A[a + 2]), tonumber(A[a + 3])
      local concMode, concValue = tonumber(A[a + 4]), tonumber(A[a + 5])
      local h
      if concMode == 2 then h = call('HMGET', hk, 'cd', 'rx', 'cl') else h = call('HMGET', hk, 'cd', 'rx') end
      local kind, ready, count, fresh = nil, 0, nil, false
      local rpmC, tpmS, climit = 0, 0, 0
      local cd = tonumber(h[1] or '0') or 0
      local dbcd = tonumber(A[a + 6]) or 0
      if dbcd > cd then cd = dbcd end
      if cd > now then kind = 'cooling'; ready = cd end
      if kind == nil and maxRpm > ${RPM_EXACT_MAX} then
        local rk = K[k + 1]
        local c = fg_wb_sum(rk, now)
        rpmC = c
        if c >= maxRpm then kind = 'rate_limited'; ready = fg_wb_ready(rk, now, c, maxRpm) end
      elseif kind == nil and maxRpm > 0 then
        -- the exact log, trimmed lazily (RPM_LOG_SLACK_MS): the count is the window's (ZCOUNT)
        local rk = K[k + 1]
        local o = call('ZRANGE', rk, 0, 0, 'WITHSCORES')
        local trimmed = #o > 0 and tonumber(o[2]) <= cutoff - ${RPM_LOG_SLACK_MS}
        if trimmed then
          call('ZREMRANGEBYSCORE', rk, '-inf', cutoff)
          call('PEXPIRE', rk, ${RPM_LOG_TTL_MS})
        end
        local c
        if #o > 0 and not trimmed and tonumber(o[2]) > cutoff then c = call('ZCARD', rk) else c = call('ZCOUNT', rk, '(' .. cutoff, '+inf') end
        fresh = #o == 0 or (trimmed and c == 0)
        rpmC = c
        if c >= maxRpm then
          local r = call('ZRANGEBYSCORE', rk, '(' .. cutoff, '+inf', 'WITHSCORES', 'LIMIT', c - maxRpm, 1)
          kind = 'rate_limited'; ready = tonumber(r[2]) + ${WINDOW_MS}
        end
      end
      if kind == nil and maxTpm > ${TPM_EXACT_MAX} then
        local tk = K[k + 2]
        local sum = fg_wb_sum(tk, now)
        tpmS = sum
        if sum >= maxTpm then kind = 'rate_limited'; ready = fg_wb_ready(tk, now, sum, maxTpm) end
      elseif kind == nil and maxTpm > 0 then
        local tk = K[k + 2]
        local sum = fg_tpm_sum(hk, tk, cutoff)
        tpmS = sum
        if sum >= maxTpm then
          kind = 'rate_limited'; ready = now + ${WINDOW_MS}
          local all = call('ZRANGE', tk, 0, -1, 'WITHSCORES')
          for j = 1, #all, 2 do
            sum = sum - fg_tokens(all[j])
            if sum < maxTpm then ready = tonumber(all[j + 1]) + ${WINDOW_MS}; break end
          end
        end
      end
      if kind == nil and concMode > 0 then
        local limit = concValue
        if concMode == 2 then limit = math.floor(tonumber(h[3] or '') or concValue) end
        count = call('ZCOUNT', K[k + 3], '(' .. now, '+inf')
        climit = limit
        if count >= limit then kind = 'saturated'; ready = now + ${SATURATED_RETRY_MS} end
      end
      if kind == nil then
        best = i; bestCount = count; bestRx = tonumber(h[2] or ''); bestFresh = fresh
        bestRpm = rpmC; bestTpm = tpmS; bestLimit = climit
        break
      end
      if kind == 'cooling' then nCool = nCool + 1 elseif kind == 'rate_limited' then nRate = nRate + 1 else nBusy = nBusy + 1 end
      if earliest == nil or ready < earliest then earliest = ready; earliestKind = kind end
    end
    g = e + 1
  end
  if best == nil then
    if earliest == nil then return {0, 'no_usable_keys', 0, 0, 0, 0} end
    return {0, earliestKind, earliest - now, nCool, nRate, nBusy}
  end
  local a = ao + 5 + ${CANDIDATE_ARG_STRIDE} * best
  local k = ko + 3 + ${CANDIDATE_KEY_STRIDE} * best
  local hk, rk, ik = K[k], K[k + 1], K[k + 3]
  local seq = call('INCR', K[ko + 1])
  local fresh = call('ZADD', lk, seq, A[a])
  -- TTLs of the key hash and the LRU set: renewed when a quarter of the hash's has passed since the
  -- last renewal (rx), not per request (and the LRU set's when it gains a key)
  if bestRx == nil or now - bestRx >= hashTtl / 4 then
    call('HSET', hk, 'rx', now)
    call('PEXPIRE', hk, hashTtl)
    call('PEXPIRE', lk, hashTtl)
    -- expired leases (a release that never came) leave the set here, with the hash's TTL renewal:
    -- every count reads live leases only (ZCOUNT above now), so they need no trim per request
    call('ZREMRANGEBYSCORE', ik, '-inf', now)
  elseif fresh == 1 then
    call('PEXPIRE', lk, hashTtl)
  end
  local maxRpm = tonumber(A[a + 2])
  -- a block (ADMISSION_GRANTS): at most 1/16 of what is left of the key's RPM window and a
  -- quarter of its free concurrency
  local bb = 1
  if block ~= nil and block > 1 then
    bb = block
    if maxRpm > 0 then bb = math.min(bb, math.floor((maxRpm - bestRpm) / 16)) end
    if bestCount ~= nil then bb = math.min(bb, math.floor((bestLimit - bestCount) / 4)) end
    local maxTpm = tonumber(A[a + 3])
    if maxTpm > 0 and bestTpm * 4 > maxTpm * 3 then bb = 1 end
    if bb < 2 then bb = 1 end
  end
  fg_block_out.n = bb
  if maxRpm > ${RPM_EXACT_MAX} then
    fg_wb_add(rk, now, bb)
  elseif maxRpm > 0 then
    if bb == 1 then
      call('ZADD', rk, now, leaseId)
    else
      local zs = {now, leaseId}
      for j = 2, bb do zs[#zs + 1] = now; zs[#zs + 1] = leaseId .. ':' .. j end
      call('ZADD', rk, unpack(zs))
    end
    if bestFresh then call('PEXPIRE', rk, ${RPM_LOG_TTL_MS}) end
  end
  local added
  if bb == 1 then
    added = call('ZADD', ik, now + leaseTtl, leaseId)
  else
    local zs = {now + leaseTtl, leaseId}
    for j = 2, bb do zs[#zs + 1] = now + leaseTtl; zs[#zs + 1] = leaseId .. ':' .. j end
    added = call('ZADD', ik, unpack(zs))
  end
  call('PEXPIRE', ik, leaseTtl + 1000)
  if bestCount ~= nil then return {1, best + 1, bestCount + added, now} end
  return {1, best + 1, call('ZCOUNT', ik, '(' .. now, '+inf'), now}
end
`;

const GATE_SLICE = `
local function fg_slice(t, from, count)
  local r = {}
  for i = 1, count do r[i] = t[from + i - 1] end
  return r
end
`;

/**
 * The selection with its gate as a Lua library: defines `fg_provider(K, A, now[, ko, ao])` (K/A
 * laid out as composeInputs lays them out, starting after the first ko keys / ao args of the
 * caller's tables: 0 when omitted) and runs nothing by itself, so a larger script can include it
 * (the relay's combined admission) — `composedLua` is this library plus one call.
 */
export function providerLua(gate: AdmissionGate | null): string {
  // fg_gate_memo: one table per script call that a gate's check may leave state in for its commit
  // (the retreat gate: what it read), so the commit need not read it again
  const gateFns = gate
    ? `local fg_gate_memo = {}\nlocal function fg_gate_check(GK, GA, now)\n${gate.checkLua}\nend\nlocal function fg_gate_commit(GK, GA, now, keyId, inFlight, leaseId)\n${gate.commitLua}\nend\n`
    : '';
  const check = gate
    ? `  local refused = fg_gate_check(GK, GA, now)\n  if refused then return {0, 'gate:' .. refused[1], tonumber(refused[2]), 0, 0, 0} end\n`
    : '';
  const commit = gate
    ? `  if r[1] == 1 then local sa = ao + 2 + ga; local out = fg_gate_commit(GK, GA, now, A[sa + 5 + ${CANDIDATE_ARG_STRIDE} * (r[2] - 1)], r[3], A[sa + 1]); if type(out) == 'string' then r[5] = out end end\n`
    : '';
  return `${LUA_HELPERS}${LUA_SELECT}${gateFns}${gate ? GATE_SLICE : ''}
local function fg_provider(K, A, now, ko, ao, block)
  ko = ko or 0
  ao = ao or 0
  local gk = tonumber(A[ao + 1])
  local ga = tonumber(A[ao + 2])
${gate ? '  local GK = fg_slice(K, ko + 1, gk)\n  local GA = fg_slice(A, ao + 3, ga)\n' : ''}${check}${gate ? '  -- an active retreat bucket (a number in the memo) is charged per request: no block\n  if block ~= nil and fg_gate_memo.retreat then block = 1 end\n' : ''}  local r = fg_select(K, A, now, ko + gk, ao + 2 + ga, block)
${commit}  return r
end
`;
}

function composedLua(gate: AdmissionGate | null): string {
  return `${providerLua(gate)}return fg_provider(KEYS, ARGV, fg_now())\n`;
}

// ---------------------------------------------------------------------------------------------
// Local half (the same algorithm over LocalDb, synchronous = atomic)
// ---------------------------------------------------------------------------------------------

function tokensOf(member: string): number {
  const m = /:(\d+)$/.exec(member);
  return m ? Number(m[1]) : 0;
}

function localTpmSum(db: LocalDb, hk: string, tk: string, cutoff: number): number {
  const before = Number(db.hget(hk, 'ts') ?? '0') || 0;
  let sum = before;
  const old = db.zrange(tk, 0, -1).filter((e) => e.score <= cutoff);
  if (old.length > 0) {
    for (const e of old) sum -= tokensOf(e.member);
    db.zremrangebyscore(tk, -Infinity, cutoff);
  }
  if (sum < 0 || !db.exists(tk)) sum = 0;
  if (sum !== before) db.hset(hk, { ts: sum });
  return sum;
}

/**
 * The indexes g..e ordered by LRU sequence (`lu`), ties by index: an insertion sort for the usual
 * few keys of one priority (no comparator closure, no sort work array), Array.prototype.sort beyond.
 */
export function sortedGroup(lu: readonly number[], g: number, e: number): number[] {
  const order = new Array<number>(e - g + 1);
  if (e - g >= 32) {
    for (let i = g; i <= e; i++) order[i - g] = i;
    return order.sort((x, y) => (lu[x] !== lu[y] ? lu[x]! - lu[y]! : x - y));
  }
  for (let i = g; i <= e; i++) {
    // insert i after every index whose sequence is <= its own (earlier indexes win ties)
    let j = i - g;
    while (j > 0 && lu[order[j - 1]!]! > lu[i]!) {
      order[j] = order[j - 1]!;
      j--;
    }
    order[j] = i;
  }
  return order;
}

/** K/A: the caller's KEYS/ARGV; the selection's part starts after ko keys / ao args (read in place, as fg_select). */
function localSelect(db: LocalDb, K: string[], A: string[], now: number, ko = 0, ao = 0): SelectionResult {
  const leaseId = A[ao + 0]!;
  const leaseTtl = Number(A[ao + 1]);
  const hashTtl = Number(A[ao + 2]);
  const n = Number(A[ao + 3]);
  const cutoff = now - WINDOW_MS;
  const lk = K[ko + 1]!;
  const lu: number[] = [];
  for (let i = 0; i < n; i++) lu.push(db.zscore(lk, A[ao + 4 + CANDIDATE_ARG_STRIDE * i]!) ?? 0);
  let best: number | null = null;
  let bestCount: number | null = null;
  let bestFresh = false;
  let earliest: number | null = null;
  let earliestKind = '';
  let nCool = 0;
  let nRate = 0;
  let nBusy = 0;
  let g = 0;
  while (best === null && g < n) {
    const pri = A[ao + 5 + CANDIDATE_ARG_STRIDE * g];
    let e = g;
    while (e + 1 < n && A[ao + 5 + CANDIDATE_ARG_STRIDE * (e + 1)] === pri) e++;
    // a group of one (the usual case) is walked without an order array
    let order: number[] | null = null;
    if (e > g) {
      order = sortedGroup(lu, g, e);
    }
    for (let j = g; j <= e; j++) {
      const i = order ? order[j - g]! : j;
      const a = 4 + CANDIDATE_ARG_STRIDE * i;
      const k = 2 + CANDIDATE_KEY_STRIDE * i;
      const hk = K[ko + k]!;
      const rk = K[ko + k + 1]!;
      const tk = K[ko + k + 2]!;
      const ik = K[ko + k + 3]!;
      const maxRpm = Number(A[ao + a + 2]);
      const maxTpm = Number(A[ao + a + 3]);
      const concMode = Number(A[ao + a + 4]);
      const concValue = Number(A[ao + a + 5]);
      let kind: string | null = null;
      let ready = 0;
      let count: number | null = null;
      let fresh = false;
      let cd = Number(db.hget(hk, 'cd') ?? '0') || 0;
      const dbcd = Number(A[ao + a + 6]) || 0;
      if (dbcd > cd) cd = dbcd;
      if (cd > now) {
        kind = 'cooling';
        ready = cd;
      }
      if (kind === null && maxRpm > RPM_EXACT_MAX) {
        const c = wbSum(db, rk, now);
        if (c >= maxRpm) {
          kind = 'rate_limited';
          ready = wbReady(db, rk, now, c, maxRpm);
        }
      } else if (kind === null && maxRpm > 0) {
        const o = db.zfirst(rk);
        const trimmed = o !== undefined && o.score <= cutoff - RPM_LOG_SLACK_MS;
        if (trimmed) {
          db.zremrangebyscore(rk, -Infinity, cutoff);
          db.pexpire(rk, RPM_LOG_TTL_MS);
        }
        const c =
          o !== undefined && !trimmed && o.score > cutoff
            ? db.zcard(rk)
            : db.zcount(rk, cutoff + 0.5, Infinity);
        fresh = o === undefined || (trimmed && c === 0);
        if (c >= maxRpm) {
          kind = 'rate_limited';
          const live = db.zrange(rk, 0, -1).filter((e) => e.score > cutoff);
          ready = live[c - maxRpm]!.score + WINDOW_MS;
        }
      }
      if (kind === null && maxTpm > TPM_EXACT_MAX) {
        const sum = wbSum(db, tk, now);
        if (sum >= maxTpm) {
          kind = 'rate_limited';
          ready = wbReady(db, tk, now, sum, maxTpm);
        }
      } else if (kind === null && maxTpm > 0) {
        let sum = localTpmSum(db, hk, tk, cutoff);
        if (sum >= maxTpm) {
          kind = 'rate_limited';
          ready = now + WINDOW_MS;
          for (const en of db.zrange(tk, 0, -1)) {
            sum -= tokensOf(en.member);
            if (sum < maxTpm) {
              ready = en.score + WINDOW_MS;
              break;
            }
          }
        }
      }
      if (kind === null && concMode > 0) {
        let limit = concValue;
        if (concMode === 2) {
          const learned = Number(db.hget(hk, 'cl') ?? '');
          limit = Math.floor(db.hget(hk, 'cl') !== null && !Number.isNaN(learned) ? learned : concValue);
        }
        count = db.zcount(ik, now + 0.5, Infinity);
        if (count >= limit) {
          kind = 'saturated';
          ready = now + SATURATED_RETRY_MS;
        }
      }
      if (kind === null) {
        best = i;
        bestCount = count;
        bestFresh = fresh;
        break;
      }
      if (kind === 'cooling') nCool++;
      else if (kind === 'rate_limited') nRate++;
      else nBusy++;
      if (earliest === null || ready < earliest) {
        earliest = ready;
        earliestKind = kind;
      }
    }
    g = e + 1;
  }
  if (best === null) {
    if (earliest === null) return [0, 'no_usable_keys', 0, 0, 0, 0];
    return [0, earliestKind, earliest - now, nCool, nRate, nBusy];
  }
  const a = 4 + CANDIDATE_ARG_STRIDE * best;
  const k = 2 + CANDIDATE_KEY_STRIDE * best;
  const hk = K[ko + k]!;
  const rk = K[ko + k + 1]!;
  const ik = K[ko + k + 3]!;
  const seq = db.incrby(K[ko + 0]!, 1);
  const fresh = db.zadd(lk, seq, A[ao + a]!);
  const rx = db.hget(hk, 'rx');
  if (rx === null || Number.isNaN(Number(rx)) || now - Number(rx) >= hashTtl / 4) {
    db.hset(hk, { rx: now });
    db.pexpire(hk, hashTtl);
    db.pexpire(lk, hashTtl);
    db.zremrangebyscore(ik, -Infinity, now);
  } else if (fresh === 1) db.pexpire(lk, hashTtl);
  const maxRpm = Number(A[ao + a + 2]);
  if (maxRpm > RPM_EXACT_MAX) wbAdd(db, rk, now, 1);
  else if (maxRpm > 0) {
    db.zadd(rk, now, leaseId);
    if (bestFresh) db.pexpire(rk, RPM_LOG_TTL_MS);
  }
  const added = db.zadd(ik, now + leaseTtl, leaseId);
  db.pexpire(ik, leaseTtl + 1000);
  return [1, best + 1, bestCount !== null ? bestCount + added : db.zcount(ik, now + 0.5, Infinity), now];
}

const NO_STRINGS: string[] = [];

/**
 * The selection script, optionally with an admission gate composed in front of it.
 * KEYS = gate keys ++ selection keys; ARGV = [#gateKeys, #gateArgs, ...gateArgs, ...selectionArgs].
 */
export function selectionScript(gate: AdmissionGate | null = null): AtomicScript<SelectionResult> {
  return {
    name: gate ? `keypool-select+${gate.name}` : 'keypool-select',
    lua: composedLua(gate),
    local(db, keys, args, now) {
      const gk = Number(args[0]);
      const ga = Number(args[1]);
      // the selection's part is read in place (offsets, as the Lua half does); only a gate's parts are copied
      const ao = 2 + ga;
      const GK = gate ? keys.slice(0, gk) : NO_STRINGS;
      const GA = gate ? args.slice(2, ao) : NO_STRINGS;
      if (gate) {
        const refused = gate.check(db, GK, GA, now);
        if (refused) return [0, `gate:${refused[0]}`, refused[1], 0, 0, 0];
      }
      const r = localSelect(db, keys, args, now, gk, ao);
      if (gate && r[0] === 1) {
        const keyId = args[ao + 4 + CANDIDATE_ARG_STRIDE * (r[1] - 1)] ?? '';
        const out = gate.commit(db, GK, GA, now, keyId, r[2], args[ao]!);
        if (typeof out === 'string') return [r[0], r[1], r[2], r[3], out];
      }
      return r;
    },
  };
}

/**
 * The selection reply, checked (a reply that is not one of SelectionResult's shapes throws): the
 * only place its positions are read outside this file's scripts.
 */
export function decodeSelection(reply: ScriptValue): SelectionResult {
  if (!Array.isArray(reply)) throw new Error('malformed key selection reply');
  const num = (v: ScriptValue | undefined): number => {
    if (typeof v !== 'number') throw new Error('malformed key selection reply');
    return v;
  };
  if (reply[0] === 1) {
    const head: [1, number, number, number] = [1, num(reply[1]), num(reply[2]), num(reply[3])];
    if (reply.length === 5 && typeof reply[4] === 'string') return [...head, reply[4]];
    if (reply.length !== 4) throw new Error('malformed key selection reply');
    return head;
  }
  if (reply[0] === 0 && reply.length === 6 && typeof reply[1] === 'string')
    return [0, reply[1], num(reply[2]), num(reply[3]), num(reply[4]), num(reply[5])];
  throw new Error('malformed key selection reply');
}

/** Full ARGV/KEYS for `selectionScript`: gate parts first. */
export function composeInputs(
  gate: { keys: string[]; args: (string | number)[] } | null,
  selection: { keys: string[]; args: string[] },
): { keys: string[]; args: string[] } {
  const gk = gate?.keys ?? [];
  const ga = gate?.args ?? [];
  const sk = selection.keys;
  const sa = selection.args;
  // one pass into preallocated arrays (every admission): no spread copies, no intermediate map
  const keys = new Array<string>(gk.length + sk.length);
  for (let i = 0; i < gk.length; i++) keys[i] = gk[i]!;
  for (let i = 0; i < sk.length; i++) keys[gk.length + i] = sk[i]!;
  const args = new Array<string>(2 + ga.length + sa.length);
  args[0] = String(gk.length);
  args[1] = String(ga.length);
  for (let i = 0; i < ga.length; i++) args[2 + i] = String(ga[i]);
  for (let i = 0; i < sa.length; i++) args[2 + ga.length + i] = sa[i]!;
  return { keys, args };
}

/**
 * `composeInputs` for a selection part prepared without its lease id: `selectionKeys` and
 * `selectionTail` (the selection's ARGV after the lease id, as `selectionInputs` lays it out) are
 * read, never kept, so they can be reused from one request to the next.
 */
export function composeLeaseInputs(
  gate: { keys: string[]; args: (string | number)[] } | null,
  selectionKeys: readonly string[],
  leaseId: string,
  selectionTail: readonly string[],
): { keys: string[]; args: string[] } {
  const gk = gate?.keys ?? [];
  const ga = gate?.args ?? [];
  const sk = selectionKeys;
  const keys = new Array<string>(gk.length + sk.length);
  for (let i = 0; i < gk.length; i++) keys[i] = gk[i]!;
  for (let i = 0; i < sk.length; i++) keys[gk.length + i] = sk[i]!;
  const args = new Array<string>(3 + ga.length + selectionTail.length);
  args[0] = String(gk.length);
  args[1] = String(ga.length);
  for (let i = 0; i < ga.length; i++) args[2 + i] = String(ga[i]);
  args[2 + ga.length] = leaseId;
  for (let i = 0; i < selectionTail.length; i++) args[3 + ga.length + i] = selectionTail[i]!;
  return { keys, args };
}

// ---------------------------------------------------------------------------------------------
// Renew, clear, snapshot
// ---------------------------------------------------------------------------------------------

// The answer path (release, tokens, cooldown, report contribution) is release.script.ts + release.lua.

/** KEYS: inf. ARGV: leaseId, ttlMs. → 1 renewed, 0 lease gone (expired or released). */
export const renewScript: AtomicScript<number> = {
  name: 'keypool-renew',
  lua: `${LUA_HELPERS}
local now = fg_now()
local ttl = tonumber(ARGV[2])
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then return 0 end
redis.call('ZADD', KEYS[1], now + ttl, ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl + 1000 then redis.call('PEXPIRE', KEYS[1], ttl + 1000) end
return 1
`,
  local(db, keys, args, now) {
    const ik = keys[0]!;
    const ttl = Number(args[1]);
    const score = db.zscore(ik, args[0]!);
    if (score === null || score <= now) return 0;
    db.zadd(ik, now + ttl, args[0]!);
    if (db.pttl(ik) < ttl + 1000) db.pexpire(ik, ttl + 1000);
    return 1;
  },
};

/** KEYS: allKeyNames (hash, rpm, tpm log, inf, tpm buckets). ARGV: 'cooldown' (end the cooldown) | 'all' (forget the key). */
export const clearKeyStateScript: AtomicScript<number> = {
  name: 'keypool-clear',
  lua: `
if ARGV[1] == 'all' then return redis.call('DEL', unpack(KEYS)) end
return redis.call('HDEL', KEYS[1], 'cd')
`,
  local(db, keys, args) {
    if (args[0] === 'all') return db.del(...keys);
    const had = db.hget(keys[0]!, 'cd') !== null;
    db.hdel(keys[0]!, 'cd');
    return had ? 1 : 0;
  },
};

/**
 * KEYS: 6 per key (allKeyNames: hash, rpm log, tpm log, inf, tpm buckets, rpm buckets). → flat
 * [requests, tokens, inFlight, cooldownUntil, ...] per key (requests and tokens: the exact log's and
 * the sub-bucket window's, one of them empty unless the key's limit just crossed its threshold). Read-only.
 */
export const snapshotScript: AtomicScript<number[]> = {
  name: 'keypool-snapshot',
  lua: `${LUA_HELPERS}
local now = fg_now()
local cutoff = now - ${WINDOW_MS}
local out = {}
local first = math.floor(now / ${BUCKET_MS}) - ${WINDOW_BUCKETS}
for i = 1, #KEYS, 6 do
  local hk, rk, tk, ik = KEYS[i], KEYS[i + 1], KEYS[i + 2], KEYS[i + 3]
  local tokens = 0
  for _, m in ipairs(redis.call('ZRANGEBYSCORE', tk, '(' .. cutoff, '+inf')) do tokens = tokens + fg_tokens(m) end
  local b = redis.call('HGETALL', KEYS[i + 4])
  for j = 1, #b, 2 do
    if b[j] ~= 's' and b[j] ~= 'lo' and tonumber(b[j]) >= first then tokens = tokens + tonumber(b[j + 1]) end
  end
  local requests = redis.call('ZCOUNT', rk, '(' .. cutoff, '+inf')
  b = redis.call('HGETALL', KEYS[i + 5])
  for j = 1, #b, 2 do
    if b[j] ~= 's' and b[j] ~= 'lo' and tonumber(b[j]) >= first then requests = requests + tonumber(b[j + 1]) end
  end
  local cd = tonumber(redis.call('HGET', hk, 'cd') or '0') or 0
  if cd <= now then cd = 0 end
  table.insert(out, requests)
  table.insert(out, tokens)
  table.insert(out, redis.call('ZCOUNT', ik, '(' .. now, '+inf'))
  table.insert(out, cd)
end
return out
`,
  local(db, keys, _args, now) {
    const cutoff = now - WINDOW_MS;
    const out: number[] = [];
    for (let i = 0; i < keys.length; i += 6) {
      const [hk, rk, tk, ik] = [keys[i]!, keys[i + 1]!, keys[i + 2]!, keys[i + 3]!];
      const tokens =
        db
          .zrange(tk, 0, -1)
          .filter((e) => e.score > cutoff)
          .reduce((s, e) => s + tokensOf(e.member), 0) + wbPeek(db.hgetall(keys[i + 4]!), now);
      let cd = Number(db.hget(hk, 'cd') ?? '0') || 0;
      if (cd <= now) cd = 0;
      const requests = db.zcount(rk, cutoff + 0.5, Infinity) + wbPeek(db.hgetall(keys[i + 5]!), now);
      out.push(requests, tokens, db.zcount(ik, now + 0.5, Infinity), cd);
    }
    return out;
  },
};

export type { ScriptValue };

/**
 * Late release of leases whose fate this instance could not confirm (an acquisition whose answer was
 * lost, a release that failed): KEYS = pairs (rpm, inf) of keys of ONE provider; ARGV = per pair
 * leaseId, dropRpm (1: the request was never sent, its RPM entry goes too). The exact RPM log only: a
 * key with a sub-bucket RPM window keeps counting such a request until it leaves the window (never
 * over the limit, at most one request per lost lease too early refused). Removing a lease that is
 * not there is a no-op, so retrying is always safe. → how many in-flight leases were still held (freed now).
 */
export const releaseLateScript: AtomicScript<number> = {
  name: 'keypool-release-late',
  lua: `
local freed = 0
for i = 1, #KEYS, 2 do
  freed = freed + redis.call('ZREM', KEYS[i + 1], ARGV[i])
  -- an entry leaving the exact RPM log renews its TTL (RPM_LOG_TTL_MS)
  if ARGV[i + 1] == '1' and redis.call('ZREM', KEYS[i], ARGV[i]) == 1 then redis.call('PEXPIRE', KEYS[i], ${RPM_LOG_TTL_MS}) end
end
return freed
`,
  local(db, keys, args) {
    let freed = 0;
    for (let i = 0; i < keys.length; i += 2) {
      freed += db.zrem(keys[i + 1]!, args[i]!);
      if (args[i + 1] === '1' && db.zrem(keys[i]!, args[i]!) === 1) db.pexpire(keys[i]!, RPM_LOG_TTL_MS);
    }
    return freed;
  },
};
