-- keypool-release: the answer path of one leased request in ONE atomic step (docs/key-pool.md):
-- frees the lease's concurrency slot, gives back its RPM entry when nothing was sent, charges its
-- tokens to the key's TPM log, applies a 429 cooldown, then runs the report contribution composed
-- in front of this file (Adaptive's retreat window and learning) with the in-flight count after
-- the release. The same step is written in TypeScript (release.script.ts, `localRelease`); the
-- randomised test test/adaptive/report-equivalence.e2e-spec.ts runs both and compares replies
-- and stored state.
--
-- The composer (release.script.ts) puts the sub-bucket window library (window-buckets.ts:
-- fg_wb_add), `local fg_contribute = nil` or
-- `local function fg_contribute(K, A, ko, ao, na, now, inFlight) … end`, and `local fg_ride = nil`
-- or a rider's library defining `fg_ride(K, A, ko, ao, now)` (another module's step riding in the
-- same call: the client key's token charge) before this file (their keys and args read in place:
-- the contribution's KEYS after the key's 4 and ARGV after the 10 of the release, the rider's after
-- the contribution's).
--
-- KEYS: hash, RPM window (the exact log :rpm, or the sub-bucket window :rpb), TPM window (the exact log :tpm, or the sub-bucket window :tpb), inf of the key,
--       then the contribution's keys, then the rider's keys.
-- ARGV: leaseId, tokens, cooldownMs, notSent (0 | 1 | b<acquiredAtMs> for a sub-bucket RPM window), hashTtlMs, TPM window kind (1 = sub-buckets,
--       0 = exact log), #contribution keys, #contribution args, #rider keys, #rider args,
--       contribution args…, rider args… (encodeRelease())
-- Reply (decodeRelease()): {cooldownUntilMs (0 = none), inFlight, nowMs[, contribution reply]}
--
-- The release only writes what the selection script reads as it always did (cd, ts = the TPM log's
-- sum, the rpm/tpm/inf sets); it does less to get there: expired leases are not trimmed here (the
-- selection trims before it counts; the reply counts live leases with ZCOUNT), the TPM log is
-- trimmed only when its oldest entry has left the window, ts moves by one HINCRBY (no read), and
-- the key hash's TTL (set by the acquisition moments ago) is only renewed when the hash had no ts
-- yet, the log was gone, or a cooldown is written. A key whose TPM window is sub-buckets (a large
-- max_tpm, or none) is charged with fg_wb_add: one HINCRBY of the bucket and one of the sum, and
-- neither ts nor the hash's TTL is touched.

-- Constants shared with TypeScript; the loader refuses a file whose values differ.
local WINDOW_MS = 60000         -- WINDOW_MS
local RPM_LOG_TTL_MS = 121000   -- RPM_LOG_TTL_MS

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local hk, rk, tk, ik = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local leaseId = ARGV[1]
local hashTtl = tonumber(ARGV[5])

-- notSent: '1' = the RPM entry leaves the exact log; 'b<acquiredAtMs>' = one request leaves the
-- sub-bucket RPM window (its bucket), only if the lease was still held (so a second release of the
-- same lease gives nothing back twice)
local freed = redis.call('ZREM', ik, leaseId)
-- an entry leaving the exact RPM log renews its TTL (the log's TTL rule: key-selection.script.ts)
if ARGV[4] == '1' then
  if redis.call('ZREM', rk, leaseId) == 1 then redis.call('PEXPIRE', rk, RPM_LOG_TTL_MS) end
elseif freed == 1 and string.sub(ARGV[4], 1, 1) == 'b' then fg_wb_give(rk, tonumber(string.sub(ARGV[4], 2)) or 0) end

local tokens = tonumber(ARGV[2]) or 0
if tokens > 0 and ARGV[6] == '1' then
  fg_wb_add(tk, now, tokens)
elseif tokens > 0 then
  -- TPM log: trim what left the window, charge this response; ts (the log's sum) moves by one
  -- HINCRBY of the difference, and is reset when the log was gone (expired) or had drifted below 0
  local cutoff = now - WINDOW_MS
  local removed, reset = 0, false
  local oldest = redis.call('ZRANGE', tk, 0, 0, 'WITHSCORES')
  if #oldest == 0 then
    reset = true
  elseif tonumber(oldest[2]) <= cutoff then
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', tk, '-inf', cutoff)) do
      removed = removed + (tonumber(string.match(m, ':(%d+)$') or '0') or 0)
    end
    redis.call('ZREMRANGEBYSCORE', tk, '-inf', cutoff)
    if redis.call('EXISTS', tk) == 0 then reset = true end
  end
  local add = 0
  if redis.call('ZADD', tk, 'NX', now, leaseId .. ':' .. ARGV[2]) == 1 then add = tokens end
  if reset then
    redis.call('HSET', hk, 'ts', add)
    redis.call('PEXPIRE', hk, hashTtl)
  else
    local delta = add - removed
    local v
    if delta ~= 0 then v = redis.call('HINCRBY', hk, 'ts', delta) else v = tonumber(redis.call('HGET', hk, 'ts') or '0') or 0 end
    if v - add < 0 then redis.call('HSET', hk, 'ts', add) end
    -- no ts before (the hash's first charge, or a hash this step created): give it its TTL
    if v == delta then redis.call('PEXPIRE', hk, hashTtl) end
  end
  redis.call('PEXPIRE', tk, WINDOW_MS + 1000)
end

local cd = 0
local cms = tonumber(ARGV[3]) or 0
if cms > 0 then
  cd = now + cms
  local cur = tonumber(redis.call('HGET', hk, 'cd') or '0') or 0
  if cur > cd then cd = cur end
  redis.call('HSET', hk, 'cd', cd)
  redis.call('PEXPIRE', hk, hashTtl)
end

local gk, ga = tonumber(ARGV[7]) or 0, tonumber(ARGV[8]) or 0
local xk, xa = tonumber(ARGV[9]) or 0, tonumber(ARGV[10]) or 0
if fg_ride ~= nil and (xk > 0 or xa > 0) then fg_ride(KEYS, ARGV, 4 + gk, 10 + ga, now) end
local inFlight = redis.call('ZCOUNT', ik, '(' .. now, '+inf')
if fg_contribute ~= nil and (gk > 0 or ga > 0) then
  local out = fg_contribute(KEYS, ARGV, 4, 10, ga, now, inFlight)
  if out ~= nil then return {cd, inFlight, now, out} end
end
return {cd, inFlight, now}
