-- Adds a job to a named queue unless it is already waiting there.
-- KEYS: ready, delayed, waiting, signal, seq
-- ARGV: job id, priority, delay in ms (0: ready at once)
-- Returns 1 if added, 0 if the job was already waiting.
local job, priority, delay = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local record = redis.call('HGET', KEYS[3], job)
if record and still_waiting(KEYS[1], KEYS[2], record, job) then
  return 0
end
if delay > 0 then
  redis.call('ZADD', KEYS[2], int(now_ms() + delay), job)
  redis.call('HSET', KEYS[3], job, int(priority))
  -- Wakes a blocked pop so that it shortens its wait to the new due time.
  redis.call('LPUSH', KEYS[4], '1')
else
  make_ready(KEYS[1], KEYS[3], KEYS[4], KEYS[5], job, priority)
end
return 1
