-- Helpers prepended to every queue script.
--
-- Keys of one named queue:
--   ready    ZSET  score = -priority, member = 16 hex digits of a sequence number
--                  followed by the job id: equal priorities sort first-in first-out
--   delayed  ZSET  score = due time (ms, server clock), member = job id
--   waiting  HASH  job id -> "<priority>" while delayed, "<priority>:<ready member>"
--                  while ready: which jobs are waiting (de-duplication), and where
--   inflight ZSET  score = visibility deadline (ms, server clock), member = the
--                  delivery's lease, "<ready member>:<priority>": the receipt is
--                  the sequence number, so acking is one ZREM of the lease
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

-- The ready-set member of `job` with a new sequence number.
local function ready_member(seq_key, job)
  return string.format('%016x', next_seq(seq_key)) .. job
end

-- Makes `job` ready and wakes one blocked pop.
local function make_ready(ready, waiting, signal, seq_key, job, priority)
  local member = ready_member(seq_key, job)
  redis.call('ZADD', ready, int(-priority), member)
  redis.call('HSET', waiting, job, int(priority) .. ':' .. member)
  redis.call('LPUSH', signal, '1')
end

-- Whether the waiting record of `job` is backed by its entry. After a partial
-- loss of data (an evicted key) it may not be, and the job must not then be
-- refused forever as "already waiting".
local function still_waiting(ready, delayed, record, job)
  local sep = string.find(record, ':', 1, true)
  if sep then
    return redis.call('ZSCORE', ready, string.sub(record, sep + 1)) ~= false
  end
  return redis.call('ZSCORE', delayed, job) ~= false
end

-- A lease "<16 hex receipt><job>:<priority>" -> job, priority (a string).
-- A member without a priority (written by an older version: the bare job id)
-- reads as priority 0.
local function split_lease(lease)
  local sep = string.find(lease, ':', 17, true)
  if not sep then
    return lease, '0'
  end
  return string.sub(lease, 17, sep - 1), string.sub(lease, sep + 1)
end
