-- Adds a job to a named queue unless it is already waiting there.
-- KEYS: ready, delayed, waiting, signal, seq
-- ARGV: job id, priority, delay in ms (0: ready at once), group, 1 if the
--       entry has a group (else 0, and the group is ignored)
-- Returns 1 if added, 0 if the job was already waiting.
local job, priority, delay = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local group = nil
if ARGV[5] == '1' then
  group = ARGV[4]
end
local gf = group_field(priority, group)
-- One read: whether the job is waiting already, and its group's turn. An
-- existing record is checked (it may be left over from a partial loss of
-- data).
local state = redis.call('HMGET', KEYS[3], job, vtime_field(priority), gf)
if state[1] and still_waiting(KEYS[1], KEYS[2], state[1], job) then
  return 0
end
if delay > 0 then
  redis.call('HSET', KEYS[3], job, delayed_record(priority, group))
  redis.call('ZADD', KEYS[2], int(now_ms() + delay), job)
else
  local tag = fair_tag(state[2], state[3])
  local member = ready_member(KEYS[5], tag, job, group)
  redis.call('HSET', KEYS[3], job, int(priority) .. ':' .. member, gf, int(tag))
  redis.call('ZADD', KEYS[1], int(-priority), member)
end
-- Wakes a blocked pop: to take the entry, or to shorten its wait to the new
-- due time.
redis.call('LPUSH', KEYS[4], '1')
return 1
