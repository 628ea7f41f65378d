-- Gives a delivered entry back, if the lease is its current delivery's.
-- KEYS: ready, delayed, waiting, inflight, signal, seq
-- ARGV: job id, lease, priority, delay in ms (0: ready at once), group, 1 if
--       the entry has a group (else 0)
-- Returns 1 if the delivery was current, 0 if the lease was stale.
local job, priority, delay = ARGV[1], tonumber(ARGV[3]), tonumber(ARGV[4])
local group = nil
if ARGV[6] == '1' then
  group = ARGV[5]
end
if redis.call('ZREM', KEYS[4], ARGV[2]) == 0 then
  return 0
end
-- Already waiting again (pushed meanwhile): that entry stands.
local record = redis.call('HGET', KEYS[3], job)
if record and still_waiting(KEYS[1], KEYS[2], record, job) then
  return 1
end
if delay > 0 then
  redis.call('ZADD', KEYS[2], int(now_ms() + delay), job)
  redis.call('HSET', KEYS[3], job, delayed_record(priority, group))
  redis.call('LPUSH', KEYS[5], '1')
else
  make_ready(KEYS[1], KEYS[3], KEYS[5], KEYS[6], job, priority, group)
end
return 1
