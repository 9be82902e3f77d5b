-- adaptive-learn: one atomic step on an upstream key's learned concurrency limit (docs/adaptive.md).
-- The same step is written in TypeScript (src/adaptive/learn.script.ts, rules in aimd.ts); the
-- contract test test/adaptive/learn-equivalence.e2e-spec.ts runs a generated grid of states and
-- events through both and asserts equal replies and equal resulting state.
--
-- KEYS: [kp key hash, ad key hash]. ARGV[1] = op; the rest is encoded by encodeLearn():
--   429:   type, inFlight, learned (1|0), initial, decrease‰, unknown‰, holdMs, minLimit
--   inc:   expected, reason (high_utilisation|probe), inFlight, initial, maxLimit, probeIntervalMs,
--          slowStart‰ (1000 = off)
--   reset: (none)
--   load:  version, learned ('' = none), c, r, t, u, l4, lt, lc, bd, lp, history
-- Reply (decodeLearn()): {changed 0|1, old, new, version, code}.
-- Run on its own (learnScript: `local NOW = nil` in front) or as `fg_learn(KEYS, ARGV, NOW)` inside
-- Adaptive's report contribution (report.lua, composed into KeyPool's release script).

-- Constants shared with TypeScript; the loader refuses a file whose values differ.
local CL = 'cl'                 -- LEARNED_LIMIT_FIELD
local TTL_MS = 2592000000       -- KEY_STATE_TTL_MS
local HISTORY_MAX = 20          -- HISTORY_MAX

-- NOW: the clock of a script this step is composed into (report.lua passes its own, so the whole
-- answer path reads one instant); nil when the step runs on its own (learnScript).
local now = NOW
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local kh, ah = KEYS[1], KEYS[2]
local op = ARGV[1]

local function num(v, d) local n = tonumber(v) if n == nil then return d end return n end
local function bump()
  local v = num(redis.call('HGET', ah, 'v'), 0) + 1
  if now > v then v = now end
  redis.call('HSET', ah, 'v', v)
  redis.call('PEXPIRE', ah, TTL_MS)
  return v
end
-- The learned limit lives in KeyPool's key hash (read by the selection script) with a copy here
-- (field ll): KeyPool's hash expires after a long idle period, this one outlives it.
local function learnedOr(d)
  local v = tonumber(redis.call('HGET', kh, CL))
  if v == nil then v = tonumber(redis.call('HGET', ah, 'll')) end
  if v == nil then return d end
  return v
end
local function setLearned(v)
  redis.call('HSET', kh, CL, v)
  redis.call('HSET', ah, 'll', v)
end
local function remember(old, new, reason, inflight)
  local rec = now .. '|' .. old .. '|' .. new .. '|' .. reason .. '|' .. inflight
  local h = redis.call('HGET', ah, 'h')
  if h and h ~= '' then h = h .. ';' .. rec else h = rec end
  local count = select(2, string.gsub(h, ';', ';')) + 1
  while count > HISTORY_MAX do
    h = string.sub(h, string.find(h, ';', 1, true) + 1)
    count = count - 1
  end
  redis.call('HSET', ah, 'h', h)
end

if op == '429' then
  local typ, inflight, learned, initial = ARGV[2], num(ARGV[3], 0), ARGV[4] == '1', num(ARGV[5], 1)
  local dec, unk, holdMs, minLimit = num(ARGV[6], 850), num(ARGV[7], 900), num(ARGV[8], 0), num(ARGV[9], 1)
  local field = ({concurrency = 'c', rpm = 'r', tpm = 't'})[typ] or 'u'
  -- The limit before the last slow-start step; the first push-back ends slow start and uses it.
  local good = nil
  if typ == 'concurrency' or typ == 'unknown' then
    good = tonumber(redis.call('HGET', ah, 'sg'))
    if good ~= nil then redis.call('HDEL', ah, 'sg') end
  end
  redis.call('HINCRBY', ah, field, 1)
  redis.call('HSET', ah, 'l4', now, 'lt', typ)
  if typ == 'concurrency' then
    redis.call('HSET', ah, 'lc', now)
    local bd = tonumber(redis.call('HGET', ah, 'bd'))
    if bd == nil or inflight < bd then redis.call('HSET', ah, 'bd', inflight) end
  end
  local cur = learnedOr(initial)
  if not learned then return {0, cur, cur, bump(), 'fixed'} end
  -- decreaseFor429()
  local nxt, reason = nil, nil
  if typ == 'concurrency' then
    local c = math.floor(inflight * dec / 1000)
    if good ~= nil and good < c then c = good end
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
  local maxLimit, probeMs, slowStart = num(ARGV[6], 100), num(ARGV[7], 300000), num(ARGV[8], 1000)
  local cur = learnedOr(initial)
  local v = num(redis.call('HGET', ah, 'v'), 0)
  if cur ~= expected then return {0, cur, cur, v, 'stale'} end
  -- increaseDecision()
  if now < num(redis.call('HGET', ah, 'hold'), 0) then return {0, cur, cur, v, 'hold'} end
  if cur >= maxLimit then return {0, cur, cur, v, 'max'} end
  local bd = tonumber(redis.call('HGET', ah, 'bd'))
  -- slow start: never pushed back (no concurrency or unknown 429 since learning began or was reset)
  local slow = slowStart > 1000 and num(redis.call('HGET', ah, 'c'), 0) == 0 and num(redis.call('HGET', ah, 'u'), 0) == 0
  local nxt = cur + 1
  if reason == 'high_utilisation' then
    if bd ~= nil and cur + 1 >= bd then return {0, cur, cur, v, 'boundary'} end
    if slow then
      local m = math.floor(cur * slowStart / 1000)
      if m > nxt then nxt = m end
      if nxt > maxLimit then nxt = maxLimit end
      if bd ~= nil and nxt > bd - 1 then nxt = bd - 1 end
      reason = 'slow_start'
      redis.call('HSET', ah, 'sg', cur)
    end
  else
    -- nothing to rediscover before the first push-back: a busy key grows by slow start
    if slow then return {0, cur, cur, v, 'slow_start'} end
    if now - num(redis.call('HGET', ah, 'lc'), 0) < probeMs or now - num(redis.call('HGET', ah, 'lp'), 0) < probeMs then
      return {0, cur, cur, v, 'quiet_period'}
    end
    redis.call('HSET', ah, 'lp', now)
    redis.call('HDEL', ah, 'bd')
  end
  setLearned(nxt)
  remember(cur, nxt, reason, inflight)
  return {1, cur, nxt, bump(), reason}

elseif op == 'reset' then
  local v = num(redis.call('HGET', ah, 'v'), 0)
  redis.call('HDEL', kh, CL)
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
  redis.call('PEXPIRE', ah, TTL_MS)
  if ARGV[3] ~= '' then setLearned(ARGV[3]) else redis.call('HDEL', kh, CL) end
  return {1, 0, 0, version, 'loaded'}
end
return redis.error_reply('unknown op ' .. tostring(op))
