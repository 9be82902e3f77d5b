-- The relay's admission with a block (ADMISSION_GRANTS=on; docs/scaling.md "Local admission
-- grants"): admission.lua's exact rules, and when every window has room the request takes B units
-- instead of 1 — the instance admits B-1 later requests of the same subjects and provider locally.
-- Included before this file, as for admission.lua: client-limits.lua and KeyPool's library.
--
-- KEYS/ARGV: admission.lua's, plus ONE trailing ARGV: the block asked for (1 = none).
-- Reply: {client reply, provider reply, B taken (1 = no block)}.
--
-- The block B: min(asked, for every client request window (exact log or sub-buckets, cost 1)
-- floor((limit - count) / 16), and KeyPool's own rule for the key: floor((max_rpm - count) / 16)
-- of its RPM window, floor((limit - in flight) / 4) of its concurrency). Any other client policy
-- kind (token bucket, spend budget) → 1; a token budget more than 3/4 used → 1. B < 2 → 1: the
-- exact per-request path. Nothing is reserved unless every window has room for all of B
-- (count + B <= limit), so a block never admits past a limit.
local RL_SLIDING_WINDOW_G = 1
local RL_SLIDING_BUCKETS_G = 4
local RL_TOKEN_BUDGET_G = 3
local ck = tonumber(ARGV[1])
local ca = tonumber(ARGV[2])
local want = tonumber(ARGV[#ARGV]) or 1
local t = redis.call('TIME')
local now_ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local client = fg_client_evaluate(KEYS, ARGV, now_ms, now_us, 0, 2)
if client.stale or not client.all_ok then
  return { fg_client_reply(client, false), {}, 1 }
end
local b = want
for i = 1, client.n do
  local p = client.policies[i]
  if p.kind == RL_SLIDING_WINDOW_G or p.kind == RL_SLIDING_BUCKETS_G then
    if p.cost ~= 1 then b = 1 else b = math.min(b, math.floor((p.limit - p.count) / 16)) end
  elseif p.kind == RL_TOKEN_BUDGET_G then
    if p.used * 4 > p.limit * 3 then b = 1 end
  else
    b = 1
  end
end
if b < 2 then b = 1 end
local provider = fg_provider(KEYS, ARGV, now_ms, ck, 2 + ca, b)
local got = 1
if provider[1] == 1 then got = fg_block_out.n end
if got > 1 then
  for i = 1, client.n do
    local p = client.policies[i]
    if p.kind == RL_SLIDING_WINDOW_G or p.kind == RL_SLIDING_BUCKETS_G then p.cost = got end
  end
end
return { fg_client_reply(client, true), provider, got }
