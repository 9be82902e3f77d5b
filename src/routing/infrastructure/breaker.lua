-- routing-breaker: one atomic step on a route target's circuit breaker record (docs/breaker.md).
-- The rule is stepBreaker() in src/routing/domain/breaker.ts (unit-tested transition by transition);
-- this file carries the same rule for Redis, and the embedded half (localBreaker in breaker.script.ts)
-- calls stepBreaker itself. test/routing/breaker-equivalence.e2e-spec.ts runs a generated grid of
-- stored records × events through both and asserts the same reply and the same stored hash.
--
-- KEYS: [brk:{<providerId>}:<model>]
-- ARGV: op (fail|ok|add|claim|release|get), consecutiveFailures, failureRate‰, minRequests, windowMs,
--       openMs, ttlMs, a1, a2 — fail/ok: a1 = probe (1|0); add: a1 = n, a2 = lastMs;
--       claim: a1 = claimMs; release: a1 = the claim's token (its pu)
-- Reply: {s, cf, ws, wf, wr, ou, pu, lf, v, transition ('' | open | half_open | closed),
--         admission ('' | allow | probe | deny)} (decodeBreaker())
-- Writes the whole record (and renews its TTL) only when a field changed.

-- Constants shared with TypeScript; the loader refuses a file whose values differ.
local CLOSED = 0                -- CLOSED
local HALF_OPEN = 1             -- HALF_OPEN
local OPEN = 2                  -- OPEN

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local key = KEYS[1]
local op = ARGV[1]
local N, rateP, minReq = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local windowMs, openMs, ttlMs = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])

local F = {'s', 'cf', 'ws', 'wf', 'wr', 'ou', 'pu', 'lf', 'v'}
local raw = redis.call('HMGET', key, unpack(F))
local rec, old = {}, {}
for i, f in ipairs(F) do
  rec[f] = tonumber(raw[i]) or 0
  old[f] = rec[f]
end

local transition, admission = '', ''
local function roll()
  if rec.ws == 0 or now >= rec.ws + windowMs then
    rec.ws = now; rec.wf = 0; rec.wr = 0
  end
end
local function open()
  rec.s = OPEN; rec.ou = now + openMs; rec.pu = 0
  transition = 'open'
end

if op == 'fail' then
  local probe = ARGV[8] == '1'
  rec.cf = rec.cf + 1
  rec.lf = now
  if rec.s == CLOSED then
    roll()
    rec.wf = rec.wf + 1
    rec.wr = rec.wr + 1
    if rec.cf >= N or (rec.wr >= minReq and rec.wf * 1000 >= rateP * rec.wr) then open() end
  elseif rec.s == HALF_OPEN and probe then
    open()
  end
elseif op == 'ok' then
  local probe = ARGV[8] == '1'
  if rec.s == CLOSED then
    roll()
    rec.wr = rec.wr + 1
    rec.cf = 0
  elseif rec.s == HALF_OPEN and probe then
    rec.s = CLOSED; rec.cf = 0; rec.ws = now; rec.wf = 0; rec.wr = 0; rec.ou = 0; rec.pu = 0
    transition = 'closed'
  end
elseif op == 'add' then
  local n, lastMs = tonumber(ARGV[8]) or 0, tonumber(ARGV[9]) or 0
  if rec.s == CLOSED and n > 0 then
    roll()
    rec.wr = rec.wr + n
    if lastMs > rec.lf then rec.cf = 0 end
  end
elseif op == 'claim' then
  local claimMs = tonumber(ARGV[8]) or 0
  if rec.s == CLOSED then
    admission = 'allow'
  else
    local due
    if rec.s == OPEN then due = now >= rec.ou else due = now >= rec.pu end
    if due then
      if rec.s == OPEN then transition = 'half_open' end
      rec.s = HALF_OPEN
      rec.pu = now + claimMs
      admission = 'probe'
    else
      admission = 'deny'
    end
  end
elseif op == 'release' then
  local token = tonumber(ARGV[8]) or -1
  if rec.s == HALF_OPEN and rec.pu == token then rec.pu = 0 end
elseif op ~= 'get' then
  return redis.error_reply('unknown op ' .. tostring(op))
end

local changed = false
for _, f in ipairs(F) do
  if rec[f] ~= old[f] then changed = true end
end
if changed then
  rec.v = old.v + 1
  if now > rec.v then rec.v = now end
  redis.call('HSET', key, 's', rec.s, 'cf', rec.cf, 'ws', rec.ws, 'wf', rec.wf, 'wr', rec.wr,
    'ou', rec.ou, 'pu', rec.pu, 'lf', rec.lf, 'v', rec.v)
  redis.call('PEXPIRE', key, ttlMs)
end
return {rec.s, rec.cf, rec.ws, rec.wf, rec.wr, rec.ou, rec.pu, rec.lf, rec.v, transition, admission}
