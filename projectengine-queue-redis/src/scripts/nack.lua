-- Gives a delivered entry back, if the receipt is its current delivery's.
-- KEYS: ready, delayed, waiting, inflight, leases, signal, seq
-- ARGV: job id, receipt, delay in ms (0: ready at once)
-- Returns 1 if the delivery was current, 0 if the receipt was stale.
local job, delay = ARGV[1], tonumber(ARGV[3])
local lease = redis.call('HGET', KEYS[5], job)
if not lease then
  return 0
end
local receipt, priority = split_lease(lease)
if receipt ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[5], job)
redis.call('ZREM', KEYS[4], job)
-- Already waiting again (pushed meanwhile): that entry stands.
local record = redis.call('HGET', KEYS[3], job)
if record and still_waiting(KEYS[1], KEYS[2], record, job) then
  return 1
end
if delay > 0 then
  redis.call('ZADD', KEYS[2], int(now_ms() + delay), job)
  redis.call('HSET', KEYS[3], job, priority)
  redis.call('LPUSH', KEYS[6], '1')
else
  make_ready(KEYS[1], KEYS[3], KEYS[6], KEYS[7], job, tonumber(priority))
end
return 1
