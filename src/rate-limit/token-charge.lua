-- The client key's token budget charge (docs/rate-limit.md, "TPM"), as a Lua library that runs
-- nothing by itself: fg_rl_charge(log, sum, member, tokens, window_ms, now_ms). Included by the
-- limiter's ChargeTokensScript (a Redis Cluster's answer path: a step of its own) and by the key
-- pool's release script as its rider (a single Redis, embedded: the charge rides in the answer's one
-- script call; src/relay/infrastructure/answer-charge.ts composes it). The TypeScript twin is
-- chargeBudget in rate-limit.scripts.ts. The log's layout, lazy trim and TTL rule are those of the
-- exact logs in client-limits.lua.
local RL_CHARGE_SLACK_PARTS = 60

-- Charges tokens to a token budget (log, sum) at now_ms: the answer path's step (composed into the
-- key pool's release on a single Redis, ChargeTokensScript alone on a cluster). Returns the sum
-- after the charge (it may still hold charges less than one slack out of the window).
local function fg_rl_charge(log, sum, member, tokens, window, now_ms)
  local slack = math.ceil(window / RL_CHARGE_SLACK_PARTS)
  local ttl = 2 * window + slack
  local cutoff = now_ms - window
  local e = redis.call('ZRANGE', log, 0, 0, 'WITHSCORES')
  if #e == 0 then
    -- a new log: a sum left without its log counts nothing
    redis.call('ZADD', log, now_ms, member .. ':' .. tokens)
    redis.call('PEXPIRE', log, ttl)
    redis.call('SET', sum, tokens, 'PX', ttl)
    return tokens
  end
  if tonumber(e[2]) <= cutoff - slack then
    local gone = 0
    for _, m in ipairs(redis.call('ZRANGEBYSCORE', log, '-inf', cutoff)) do
      gone = gone + (tonumber(string.match(m, ':(%d+)$')) or 0)
    end
    redis.call('ZREMRANGEBYSCORE', log, '-inf', cutoff)
    redis.call('ZADD', log, now_ms, member .. ':' .. tokens)
    local v = redis.call('INCRBY', sum, tokens - gone)
    redis.call('PEXPIRE', log, ttl)
    redis.call('PEXPIRE', sum, ttl)
    return v
  end
  redis.call('ZADD', log, now_ms, member .. ':' .. tokens)
  -- a sum that was missing (never with its log there) gets its TTL
  local v = redis.call('INCRBY', sum, tokens)
  if v == tokens then redis.call('PEXPIRE', sum, ttl) end
  return v
end

