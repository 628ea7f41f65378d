-- Takes the next deliverable entry of several named queues.
-- KEYS: seq, then per queue: ready, delayed, waiting, inflight, leases, signal
-- ARGV: visibility timeout in ms, most entries to promote per queue and kind
-- Returns {1, queue index (1-based), job id, priority, receipt} on a hit,
-- {0, ms until the next entry falls due (-1: none), '', 0, 0} on a miss.
local visibility, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local seq_key = KEYS[1]
local n = (#KEYS - 1) / 6
local function key(i, k)
  return KEYS[1 + (i - 1) * 6 + k]
end
local now = now_ms()

local best, best_score, best_member
for i = 1, n do
  local ready, delayed, waiting = key(i, 1), key(i, 2), key(i, 3)
  local inflight, leases, signal = key(i, 4), key(i, 5), key(i, 6)
  -- Delayed entries that fell due (a ready record means the job was made
  -- ready meanwhile; no record means it was lost, and recovery pushes it).
  for _, job in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now, 'LIMIT', 0, limit)) do
    redis.call('ZREM', delayed, job)
    local record = redis.call('HGET', waiting, job)
    if record and not string.find(record, ':', 1, true) then
      make_ready(ready, waiting, signal, seq_key, job, tonumber(record))
    end
  end
  -- Deliveries whose visibility timeout passed.
  for _, job in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now, 'LIMIT', 0, limit)) do
    redis.call('ZREM', inflight, job)
    local lease = redis.call('HGET', leases, job)
    redis.call('HDEL', leases, job)
    if lease then
      local _, p = split_lease(lease)
      local record = redis.call('HGET', waiting, job)
      if not (record and still_waiting(ready, delayed, record, job)) then
        make_ready(ready, waiting, signal, seq_key, job, tonumber(p))
      end
    end
  end
  local head = redis.call('ZRANGE', ready, 0, 0, 'WITHSCORES')
  if head[1] then
    local score = tonumber(head[2])
    if not best or score < best_score or (score == best_score and head[1] < best_member) then
      best, best_score, best_member = i, score, head[1]
    end
  end
end

if not best then
  local next_due
  for i = 1, n do
    for _, k in ipairs({ key(i, 2), key(i, 4) }) do
      local head = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
      if head[2] then
        local at = tonumber(head[2])
        if not next_due or at < next_due then
          next_due = at
        end
      end
    end
    -- Nothing is ready: tokens left in the signal list are stale.
    redis.call('DEL', key(i, 6))
  end
  if next_due then
    return { 0, math.max(next_due - now, 1), '', 0, 0 }
  end
  return { 0, -1, '', 0, 0 }
end

redis.call('ZREM', key(best, 1), best_member)
local job = string.sub(best_member, 17)
local receipt = tonumber(string.sub(best_member, 1, 16), 16)
local priority = -best_score
redis.call('HDEL', key(best, 3), job)
redis.call('HSET', key(best, 5), job, int(receipt) .. ':' .. int(priority))
redis.call('ZADD', key(best, 4), int(now + visibility), job)
return { 1, best, job, priority, receipt }
