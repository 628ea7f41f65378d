-- Helpers prepended to every queue script.
--
-- Keys of one named queue:
--   ready    ZSET  score = -priority, member = 16 hex digits of the entry's
--                  fairness tag, 16 of a sequence number, the job id, and
--                  ":<group>" if it has one: within a priority the lowest tag
--                  comes first, equal tags first-in first-out
--   delayed  ZSET  score = due time (ms, server clock), member = job id
--   waiting  HASH  job id -> "<priority>" (no group) or "<priority>/<group>"
--                  while delayed, "<priority>:<ready member>" while ready:
--                  which jobs are waiting (de-duplication), and where; and the
--                  fair-queuing state of each priority (see the Queue trait):
--                  "v:<priority>" -> its virtual time V, "g:<priority>" (no
--                  group) or "g:<priority>:<group>" -> the group's last tag,
--                  deleted once it is <= V (and V once no entry of its
--                  priority is ready)
--   inflight ZSET  score = visibility deadline (ms, server clock), member = the
--                  delivery's lease, "<16 hex seq><job>:<priority>", then
--                  ":<group>" if it has one: the receipt is the sequence
--                  number, so acking is one ZREM of the lease
--   signal   LIST  a token per entry made ready (and per delayed push); a pop
--                  takes a token (BLPOP) before it looks, and blocks on it
-- and one sequence shared by all queues of a prefix.

-- Integers as exact decimal strings (Lua numbers are doubles).
local function int(n)
  return string.format('%d', n)
end

-- Now, in milliseconds, by the server's clock: every process agrees on it.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- The next sequence number (FIFO order, and the receipt of a delivery). A new
-- sequence starts from the clock, so that after its key is lost numbers keep
-- growing and a receipt from before the loss never matches a later delivery.
local function next_seq(key)
  local s = redis.call('INCR', key)
  if s == 1 then
    s = now_ms() * 1000
    redis.call('SET', key, int(s))
  end
  return s
end

-- The field of the waiting hash that holds the last tag of `group` (nil: no
-- group) at `priority`.
local function group_field(priority, group)
  if group then
    return 'g:' .. int(priority) .. ':' .. group
  end
  return 'g:' .. int(priority)
end

-- The field of the waiting hash that holds the virtual time of `priority`.
local function vtime_field(priority)
  return 'v:' .. int(priority)
end

-- A fairness tag from the virtual time and the group's last tag, as HMGET
-- answered them (false when absent): max(V, last) + 1.
local function fair_tag(v, last)
  return math.max(tonumber(v) or 0, tonumber(last) or 0) + 1
end

-- The ready-set member of `job` of `group` with `tag` and a new sequence
-- number.
local function ready_member(seq_key, tag, job, group)
  local member = string.format('%016x', tag) .. string.format('%016x', next_seq(seq_key)) .. job
  if group then
    member = member .. ':' .. group
  end
  return member
end

-- A ready member -> tag, sequence number, job, group (nil: none). A member
-- without a tag (written by an older version: 16 hex digits and the job id,
-- whose 9th character is '-') reads as tag 0.
local function split_member(member)
  if string.sub(member, 25, 25) == '-' then
    return 0, tonumber(string.sub(member, 1, 16), 16), string.sub(member, 17), nil
  end
  local tag = tonumber(string.sub(member, 1, 16), 16)
  local seq = tonumber(string.sub(member, 17, 32), 16)
  local sep = string.find(member, ':', 33, true)
  if sep then
    return tag, seq, string.sub(member, 33, sep - 1), string.sub(member, sep + 1)
  end
  return tag, seq, string.sub(member, 33), nil
end

-- A waiting record -> whether it is a ready one, the priority, and the ready
-- member (ready) or the group (delayed; nil: none).
local function split_record(record)
  local p, sep, rest = string.match(record, '^(-?%d+)(.?)(.*)$')
  if sep == ':' then
    return true, tonumber(p), rest
  end
  if sep == '/' then
    return false, tonumber(p), rest
  end
  return false, tonumber(p), nil
end

-- The waiting record of a delayed entry.
local function delayed_record(priority, group)
  if group then
    return int(priority) .. '/' .. group
  end
  return int(priority)
end

-- Makes `job` ready, tagged for its group's turn, and wakes one blocked pop.
local function make_ready(ready, waiting, signal, seq_key, job, priority, group)
  local gf = group_field(priority, group)
  local state = redis.call('HMGET', waiting, vtime_field(priority), gf)
  local tag = fair_tag(state[1], state[2])
  local member = ready_member(seq_key, tag, job, group)
  redis.call('ZADD', ready, int(-priority), member)
  redis.call('HSET', waiting, job, int(priority) .. ':' .. member, gf, int(tag))
  redis.call('LPUSH', signal, '1')
end

-- Whether the waiting record of `job` is backed by its entry. After a partial
-- loss of data (an evicted key) it may not be, and the job must not then be
-- refused forever as "already waiting".
local function still_waiting(ready, delayed, record, job)
  local is_ready, _, member = split_record(record)
  if is_ready then
    return redis.call('ZSCORE', ready, member) ~= false
  end
  return redis.call('ZSCORE', delayed, job) ~= false
end

-- A lease "<16 hex receipt><job>:<priority>[:<group>]" -> job, priority (a
-- string), group (nil: none). A member without a priority (written by an
-- older version: the bare job id) reads as priority 0.
local function split_lease(lease)
  local sep = string.find(lease, ':', 17, true)
  if not sep then
    return lease, '0', nil
  end
  local job, rest = string.sub(lease, 17, sep - 1), string.sub(lease, sep + 1)
  local gsep = string.find(rest, ':', 1, true)
  if gsep then
    return job, string.sub(rest, 1, gsep - 1), string.sub(rest, gsep + 1)
  end
  return job, rest, nil
end
