-- Adds a job to a named queue unless it is already waiting there.
-- KEYS: ready, delayed, waiting, signal, seq
-- ARGV: job id, priority, delay in ms (0: ready at once)
-- Returns 1 if added, 0 if the job was already waiting.
local job, priority, delay = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local member, record
if delay > 0 then
  record = int(priority)
else
  member = ready_member(KEYS[5], job)
  record = int(priority) .. ':' .. member
end
-- Claims the waiting record in one command; an existing one is checked only
-- then (it may be left over from a partial loss of data).
if redis.call('HSETNX', KEYS[3], job, record) == 0 then
  local old = redis.call('HGET', KEYS[3], job)
  if old and still_waiting(KEYS[1], KEYS[2], old, job) then
    return 0
  end
  redis.call('HSET', KEYS[3], job, record)
end
if delay > 0 then
  redis.call('ZADD', KEYS[2], int(now_ms() + delay), job)
else
  redis.call('ZADD', KEYS[1], int(-priority), member)
end
-- Wakes a blocked pop: to take the entry, or to shorten its wait to the new
-- due time.
redis.call('LPUSH', KEYS[4], '1')
return 1
