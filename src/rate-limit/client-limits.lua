-- The client rate limits (docs/rate-limit.md) as a Lua library: no statement runs by itself; the
-- scripts that include it call its functions (rate-limit.scripts.ts: the limiter's AdmissionScript;
-- the relay's combined admission, src/relay/infrastructure/admission.lua). The TypeScript twin is
-- clientEvaluate / clientReply in rate-limit.scripts.ts; the constants below are checked against it.
--
-- K: per policy 1 key (2 for a token budget: log, sum; 2 for a spend budget: counter, reservations).
-- Kinds: RL_SLIDING_WINDOW (exact log), RL_SLIDING_BUCKETS (sub-bucket window), RL_TOKEN_BUCKET, 3 = token budget,
--   RL_SPEND_BUDGET (a spend budget's counter for one period: spent + reserved µ$; window_ms = ms to
--   the period's reset, 0 = never; burst = the reservation's TTL in ms; cost = this request's
--   reservation; docs/spend.md "Budgets"). Needs the spend library (SPEND_BUDGET_LUA in
--   rate-limit.scripts.ts: fg_rl_spend_sweep), which CLIENT_LIMITS_LUA puts before this file.
-- A: member, deadline_ms (Redis clock, 0 = none), dry_run (1 = evaluate only), n,
--    n x (kind, limit, window_ms, burst, cost).
-- Reply of fg_client_reply: {status, now_ms, n x (admitted, remaining, current, reset_ms, retry_ms)}.
local RL_STALE = -1
local RL_ADMITTED = 1
local RL_REJECTED = 0
local RL_SLIDING_WINDOW = 1
local RL_TOKEN_BUCKET = 2
local RL_SLIDING_BUCKETS = 4
local RL_SPEND_BUDGET = 5
local RL_SPEND_TTL_SLACK_MS = 3600000
local RL_SUB_BUCKETS = 60
local RL_ARGS_PER_POLICY = 5

-- The exact logs (an exact sliding window: one member per admitted request; a token budget: one
-- member "<token>:<tokens>" per charge, plus the running sum of its charges in its own key) are
-- trimmed lazily and keep a long TTL (docs/rate-limit.md, "Exact logs"):
--   * a read looks at the oldest entry (ZRANGE 0 0); the count is the window's (ZCOUNT above the
--     cutoff), so entries that left the window never count, trimmed or not;
--   * they are deleted (ZREMRANGEBYSCORE) only when the oldest is more than one slack
--     (window / RL_SUB_BUCKETS) out of the window — once per slack, not per request — and the TTL
--     (2 x window + slack) is renewed then and when the log is created, not on every write. Why
--     that TTL never drops a live entry: a write at t that renews nothing found the oldest entry
--     o > t - window - slack, and the last renewal came at or after o was added (o was there when
--     the trim before it ran, or o created the log), so the log lives until at least
--     o + 2 x window + slack > t + window: past the end of the window of everything in it. (A ZREM
--     of an entry — a rollback — renews the TTL too, for the same reason.)
-- The oldest entry of a log in the window (cutoff exclusive), nil when none.
local function fg_rl_log_oldest(key, cutoff)
  local r = redis.call('ZRANGEBYSCORE', key, '(' .. cutoff, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #r == 0 then return nil end
  return tonumber(r[2])
end

-- The sliding window of sub-buckets (kind RL_SLIDING_BUCKETS, a limit above SLIDING_EXACT_MAX: see
-- rate-limit.scripts.ts for the layout and the error bound). One hash: '<bucket id>' = requests
-- admitted in that bucket (id = floor(ms / bms), bms = ceil(window / RL_SUB_BUCKETS)), s = their
-- sum, lo = the lowest id that may still be present, b = bms (a hash of another bucket size, i.e.
-- another window, is dropped).
-- Deletes the buckets below `first`, takes them off s; returns the new s and lo (nil: hash gone).
local function fg_rl_sb_trim(key, first, s)
  local all = redis.call('HGETALL', key)
  local dead, lo = {}, nil
  for j = 1, #all, 2 do
    local f = all[j]
    if f ~= 's' and f ~= 'lo' and f ~= 'b' then
      local id = tonumber(f)
      if id < first then s = s - tonumber(all[j + 1]); dead[#dead + 1] = f
      elseif lo == nil or id < lo then lo = id end
    end
  end
  if lo == nil then redis.call('DEL', key); return 0, nil end
  if #dead > 0 then redis.call('HDEL', key, unpack(dead)) end
  redis.call('HSET', key, 's', s, 'lo', lo)
  return s, lo
end

-- The count over the window (every bucket id >= first), trimming only when lo says a bucket left.
local function fg_rl_sb_count(p, now_ms)
  p.bms = math.ceil(p.window / RL_SUB_BUCKETS)
  p.first = math.floor(now_ms / p.bms) - RL_SUB_BUCKETS
  p.id = math.floor(now_ms / p.bms)
  -- the current bucket is read with the sum, so the commit writes both with one HSET
  local h = redis.call('HMGET', p.key, 's', 'lo', 'b', p.id)
  local s = tonumber(h[1] or '0') or 0
  local lo = tonumber(h[2] or '')
  p.cur = tonumber(h[4] or '0') or 0
  if h[3] and tonumber(h[3]) ~= p.bms then
    redis.call('DEL', p.key)
    s, lo, p.cur = 0, nil, 0
  elseif lo ~= nil and lo < p.first then
    s, lo = fg_rl_sb_trim(p.key, p.first, s)
    if lo == nil then p.cur = 0 end
  end
  p.lo = lo
  p.s = s
  return s
end

-- Refused: when enough of the oldest buckets have left the window for count + cost <= limit.
local function fg_rl_sb_retry(p, now_ms)
  if p.cost > p.limit then return p.window end
  local all = redis.call('HGETALL', p.key)
  local ids = {}
  for j = 1, #all, 2 do
    local f = all[j]
    if f ~= 's' and f ~= 'lo' and f ~= 'b' then ids[#ids + 1] = { tonumber(f), tonumber(all[j + 1]) } end
  end
  table.sort(ids, function(x, y) return x[1] < y[1] end)
  local left = p.count
  for _, e in ipairs(ids) do
    left = left - e[2]
    if left + p.cost <= p.limit then return (e[1] + RL_SUB_BUCKETS + 1) * p.bms - now_ms end
  end
  return p.window
end

-- Phase 1: evaluates every policy (trims expired entries; records nothing). K/A start after the
-- first ko keys / ao args of the tables passed (0 when omitted: a caller's KEYS/ARGV are read in
-- place, never copied).
-- Returns st: st.stale (ran after the deadline: nothing looked at), st.all_ok, st.dry.
local function fg_client_evaluate(K, A, now_ms, now_us, ko, ao)
  ko = ko or 0
  ao = ao or 0
  local st = { now_ms = now_ms, now_us = now_us, member = A[ao + 1], dry = A[ao + 3] == '1',
               n = tonumber(A[ao + 4]), policies = {}, all_ok = true, stale = false }
  local deadline = tonumber(A[ao + 2])
  if deadline > 0 and now_ms > deadline then
    st.stale = true
    return st
  end
  local k = ko + 1
  for i = 1, st.n do
    local b = ao + 4 + (i - 1) * RL_ARGS_PER_POLICY
    local p = { kind = tonumber(A[b + 1]), limit = tonumber(A[b + 2]), window = tonumber(A[b + 3]),
                burst = tonumber(A[b + 4]), cost = tonumber(A[b + 5]), key = K[k], retry = 0 }
    if p.kind == RL_SLIDING_WINDOW then
      k = k + 1
      p.cutoff = now_ms - p.window
      p.slack = math.ceil(p.window / RL_SUB_BUCKETS)
      local e = redis.call('ZRANGE', p.key, 0, 0, 'WITHSCORES')
      local o = tonumber(e[2] or '')
      p.fresh = o == nil
      -- p.oldest: the oldest entry in the window (nil: none; false: not read yet)
      if o ~= nil and o <= p.cutoff - p.slack then
        redis.call('ZREMRANGEBYSCORE', p.key, '-inf', p.cutoff)
        p.count = redis.call('ZCARD', p.key)
        if p.count > 0 then redis.call('PEXPIRE', p.key, 2 * p.window + p.slack) else p.fresh = true end
        if p.count > 0 then p.oldest = false else p.oldest = nil end
      elseif o == nil then
        p.count = 0
        p.oldest = nil
      elseif o > p.cutoff then
        -- every entry is in the window: the set's size is the count
        p.count = redis.call('ZCARD', p.key)
        p.oldest = o
      else
        p.count = redis.call('ZCOUNT', p.key, '(' .. p.cutoff, '+inf')
        if p.count > 0 then p.oldest = false else p.oldest = nil end
      end
      p.ok = p.count + p.cost <= p.limit
      if not p.ok then
        if p.cost > p.limit then
          p.retry = p.window
        else
          local rank = p.count + p.cost - p.limit - 1
          local at
          if rank == 0 and p.oldest then at = p.oldest
          else
            at = tonumber(redis.call('ZRANGEBYSCORE', p.key, '(' .. p.cutoff, '+inf', 'WITHSCORES', 'LIMIT', rank, 1)[2])
          end
          p.retry = at + p.window - now_ms
        end
      end
    elseif p.kind == RL_SLIDING_BUCKETS then
      k = k + 1
      p.count = fg_rl_sb_count(p, now_ms)
      p.ok = p.count + p.cost <= p.limit
      if not p.ok then p.retry = fg_rl_sb_retry(p, now_ms) end
    elseif p.kind == RL_SPEND_BUDGET then
      p.res = K[k + 1]
      k = k + 2
      -- reservations past their deadline (their request's instance died, or its settlement never
      -- ran) are given back first
      fg_rl_spend_sweep(p.key, p.res, now_ms)
      p.used = tonumber(redis.call('GET', p.key) or '0') or 0
      -- refused when spent + reserved + this > limit
      p.ok = p.used + p.cost <= p.limit
      if not p.ok then p.retry = p.window end
    elseif p.kind == RL_TOKEN_BUCKET then
      k = k + 1
      p.interval = math.ceil(p.window * 1000 / p.limit)
      p.tat = tonumber(redis.call('GET', p.key) or '0')
      if p.tat < now_us then p.tat = now_us end
      local allow_at = p.tat + p.interval * p.cost - p.burst * p.interval
      p.ok = allow_at <= now_us
      if not p.ok then p.retry = math.ceil((allow_at - now_us) / 1000) end
    else
      p.sum = K[k + 1]
      k = k + 2
      p.cutoff = now_ms - p.window
      p.slack = math.ceil(p.window / RL_SUB_BUCKETS)
      local e = redis.call('ZRANGE', p.key, 0, 0, 'WITHSCORES')
      local o = tonumber(e[2] or '')
      if o == nil then
        p.used = 0
        p.oldest = nil
      elseif o <= p.cutoff - p.slack then
        local gone = 0
        for _, m in ipairs(redis.call('ZRANGEBYSCORE', p.key, '-inf', p.cutoff)) do
          gone = gone + (tonumber(string.match(m, ':(%d+)$')) or 0)
        end
        redis.call('ZREMRANGEBYSCORE', p.key, '-inf', p.cutoff)
        if redis.call('ZCARD', p.key) == 0 then
          redis.call('DEL', p.sum)
          p.used = 0
          p.oldest = nil
        else
          p.used = redis.call('DECRBY', p.sum, gone)
          redis.call('PEXPIRE', p.key, 2 * p.window + p.slack)
          redis.call('PEXPIRE', p.sum, 2 * p.window + p.slack)
          p.oldest = false
        end
      elseif o <= p.cutoff then
        -- charges less than one slack out of the window: still in the sum, not counted
        local gone = 0
        for _, m in ipairs(redis.call('ZRANGEBYSCORE', p.key, '-inf', p.cutoff)) do
          gone = gone + (tonumber(string.match(m, ':(%d+)$')) or 0)
        end
        p.used = (tonumber(redis.call('GET', p.sum) or '0') or 0) - gone
        p.oldest = false
      else
        p.used = tonumber(redis.call('GET', p.sum) or '0') or 0
        p.oldest = o
      end
      if p.used < 0 then p.used = 0 end
      p.ok = p.used < p.limit
      if not p.ok then
        local entries = redis.call('ZRANGEBYSCORE', p.key, '(' .. p.cutoff, '+inf', 'WITHSCORES')
        local left = p.used
        for j = 1, #entries, 2 do
          left = left - (tonumber(string.match(entries[j], ':(%d+)$')) or 0)
          if left < p.limit then
            p.retry = tonumber(entries[j + 1]) + p.window - now_ms
            break
          end
        end
      end
    end
    if not p.ok then st.all_ok = false end
    st.policies[i] = p
  end
  return st
end

-- Phase 2: records the request in every policy when `commit` (only ever with st.all_ok), and
-- returns the reply the limiter decodes.
local function fg_client_reply(st, commit)
  local now_ms, now_us = st.now_ms, st.now_us
  if st.stale then return { RL_STALE, now_ms } end
  local out = { st.all_ok and RL_ADMITTED or RL_REJECTED, now_ms }
  for i = 1, st.n do
    local p = st.policies[i]
    local remaining, current, reset = 0, 0, 0
    if p.kind == RL_SLIDING_WINDOW then
      if commit and p.cost > 0 then
        if p.cost == 1 then
          redis.call('ZADD', p.key, now_ms, st.member)
        else
          -- several entries (a block: ADMISSION_GRANTS) in one ZADD
          local zs = { now_ms, st.member }
          for j = 2, p.cost do zs[#zs + 1] = now_ms; zs[#zs + 1] = st.member .. ':' .. j end
          redis.call('ZADD', p.key, unpack(zs))
        end
        -- the TTL is set when the log is created or trimmed, not per write (see the exact logs above)
        if p.fresh then redis.call('PEXPIRE', p.key, 2 * p.window + p.slack) end
        if p.count == 0 then p.oldest = now_ms end
        p.count = p.count + p.cost
      end
      current = p.count
      remaining = p.limit - current
      if remaining < 0 then remaining = 0 end
      if current > 0 then
        if not p.oldest then p.oldest = fg_rl_log_oldest(p.key, p.cutoff) end
        reset = p.oldest + p.window - now_ms
      end
    elseif p.kind == RL_SLIDING_BUCKETS then
      if commit and p.cost > 0 then
        local id = p.id
        -- the bucket and s were read by the evaluation (same atomic step): one HSET writes both
        if p.cur + p.cost == p.cost and p.lo == nil then
          redis.call('HSET', p.key, id, p.cur + p.cost, 'lo', id, 'b', p.bms, 's', p.s + p.cost)
          p.lo = id
        else
          redis.call('HSET', p.key, id, p.cur + p.cost, 's', p.s + p.cost)
        end
        if p.cur + p.cost == p.cost then
          -- a new bucket (once per bms): the TTL (the newest bucket counts until (id + N + 1)·bms)
          redis.call('PEXPIRE', p.key, (RL_SUB_BUCKETS + 1) * p.bms)
        end
        p.count = p.count + p.cost
      end
      current = p.count
      remaining = p.limit - current
      if remaining < 0 then remaining = 0 end
      if current > 0 and p.lo ~= nil then reset = (p.lo + RL_SUB_BUCKETS + 1) * p.bms - now_ms end
    elseif p.kind == RL_SPEND_BUDGET then
      if commit and p.cost > 0 then
        p.used = redis.call('INCRBY', p.key, string.format('%d', p.cost))
        -- the reservation, until its deadline (now + TTL; the relay renews it while the request lives)
        redis.call('ZADD', p.res, now_ms + p.burst, st.member .. ':' .. string.format('%d', p.cost))
        -- a period's counter outlives its period by a slack (late settlements still find it)
        if p.window > 0 then
          redis.call('PEXPIRE', p.key, p.window + RL_SPEND_TTL_SLACK_MS)
          redis.call('PEXPIRE', p.res, p.window + RL_SPEND_TTL_SLACK_MS)
        end
      end
      current = p.used
      remaining = p.limit - p.used
      if remaining < 0 then remaining = 0 end
      reset = p.window
    elseif p.kind == RL_TOKEN_BUCKET then
      if commit and p.cost > 0 then
        p.tat = p.tat + p.interval * p.cost
        redis.call('SET', p.key, p.tat, 'PX', math.ceil((p.tat - now_us) / 1000) + 1)
      end
      remaining = math.floor((now_us + p.burst * p.interval - p.tat) / p.interval)
      if remaining < 0 then remaining = 0 end
      if remaining > p.burst then remaining = p.burst end
      current = p.burst - remaining
      if remaining < p.burst then
        reset = math.ceil((p.tat - p.burst * p.interval + (remaining + 1) * p.interval - now_us) / 1000)
      end
    else
      current = p.used
      remaining = p.limit - p.used
      if remaining < 0 then remaining = 0 end
      if p.oldest == false then p.oldest = fg_rl_log_oldest(p.key, p.cutoff) end
      if p.oldest then reset = p.oldest + p.window - now_ms end
    end
    local ok = 0
    if p.ok then ok = 1 end
    table.insert(out, ok)
    table.insert(out, remaining)
    table.insert(out, current)
    table.insert(out, reset)
    table.insert(out, p.retry)
  end
  return out
end
