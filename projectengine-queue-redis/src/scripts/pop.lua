-- Takes up to `max` deliverable entries of several named queues, best first.
-- KEYS: seq, then per queue: ready, delayed, waiting, inflight, signal
-- ARGV: visibility timeout in ms, most entries to promote per queue and kind,
--       1 to promote due entries first (else only when nothing is ready),
--       the caller's estimate of the server's clock in ms (0: none),
--       max (at least 1)
-- Returns {count, due, clock, then per entry taken: queue index (1-based),
-- job id, priority, receipt, group ("=<group>", or "" without one)}, where
-- due is the ms until the next delayed or in-flight entry falls due if this
-- call looked (-1: none), -2 if not, and clock the server's clock in ms if
-- this call read it (else -1).
local visibility, limit = tonumber(ARGV[1]), tonumber(ARGV[2])
local estimate = tonumber(ARGV[4])
local max = tonumber(ARGV[5])
local n = (#KEYS - 1) / 5
local function key(i, k)
  return KEYS[1 + (i - 1) * 5 + k]
end
-- The clock is read (TIME) only to promote: comparing due times needs it
-- exact. A visibility deadline may use the caller's estimate (anchored on an
-- earlier reading; off by a round trip at most), when it has one.
local clock
local function now()
  if not clock then
    clock = now_ms()
  end
  return clock
end

-- Moves entries that fell due to `ready`: delayed ones (a ready record means
-- the job was made ready meanwhile; no record means it was lost, and
-- recovery pushes it), and deliveries whose visibility timeout passed.
local function promote(i)
  local ready, delayed, waiting = key(i, 1), key(i, 2), key(i, 3)
  local inflight, signal = key(i, 4), key(i, 5)
  for _, job in ipairs(redis.call('ZRANGEBYSCORE', delayed, '-inf', now(), 'LIMIT', 0, limit)) do
    redis.call('ZREM', delayed, job)
    local record = redis.call('HGET', waiting, job)
    if record then
      local is_ready, p, group = split_record(record)
      if not is_ready then
        make_ready(ready, waiting, signal, KEYS[1], job, p, group)
      end
    end
  end
  for _, lease in ipairs(redis.call('ZRANGEBYSCORE', inflight, '-inf', now(), 'LIMIT', 0, limit)) do
    redis.call('ZREM', inflight, lease)
    local job, p, group = split_lease(lease)
    local record = redis.call('HGET', waiting, job)
    if not (record and still_waiting(ready, delayed, record, job)) then
      make_ready(ready, waiting, signal, KEYS[1], job, tonumber(p), group)
    end
  end
end

-- Removes and answers the best ready entry: (queue index, member, score).
local function take()
  if n == 1 then
    local head = redis.call('ZPOPMIN', key(1, 1))
    if head[1] then
      return 1, head[1], tonumber(head[2])
    end
    return nil
  end
  local best, best_score, best_member
  for i = 1, n do
    local head = redis.call('ZRANGE', key(i, 1), 0, 0, 'WITHSCORES')
    if head[1] then
      local score = tonumber(head[2])
      if not best or score < best_score or (score == best_score and head[1] < best_member) then
        best, best_score, best_member = i, score, head[1]
      end
    end
  end
  if best then
    redis.call('ZREM', key(best, 1), best_member)
  end
  return best, best_member, best_score
end

-- Ms until the next delayed or in-flight entry falls due; -1: none.
local function next_due()
  local at
  for i = 1, n do
    for _, k in ipairs({ key(i, 2), key(i, 4) }) do
      local head = redis.call('ZRANGE', k, 0, 0, 'WITHSCORES')
      if head[2] then
        local t = tonumber(head[2])
        if not at or t < at then
          at = t
        end
      end
    end
  end
  if at then
    return math.max(at - now(), 1)
  end
  return -1
end

local scanned = ARGV[3] == '1'
if scanned then
  for i = 1, n do
    promote(i)
  end
end
local best, member, score = take()
if not best and not scanned then
  scanned = true
  for i = 1, n do
    promote(i)
  end
  best, member, score = take()
end

if not best then
  -- Nothing is ready: tokens left in the signal lists are stale.
  for i = 1, n do
    redis.call('DEL', key(i, 5))
  end
  return { 0, next_due(), clock or -1 }
end

local base = clock
if not base then
  if estimate > 0 then
    base = estimate
  else
    base = now()
  end
end
local out = { 0, -2, -1 }
local taken = 0
while best do
  local tag, receipt, job, group = split_member(member)
  local priority = -score
  local waiting = key(best, 3)
  if tag > 0 then
    -- The virtual time V moves to this tag. The group's last tag is
    -- forgotten once it is <= V (this was the group's last ready entry);
    -- when no entry of this priority is left, no group has a last tag and
    -- V goes too: the next entry starts from 0, which orders alike.
    local gf, vf = group_field(priority, group), vtime_field(priority)
    local last = tonumber(redis.call('HGET', waiting, gf))
    if last and last <= tag then
      if redis.call('ZCOUNT', key(best, 1), int(score), int(score)) == 0 then
        redis.call('HDEL', waiting, job, gf, vf)
      else
        redis.call('HDEL', waiting, job, gf)
        redis.call('HSET', waiting, vf, int(tag))
      end
    else
      redis.call('HDEL', waiting, job)
      redis.call('HSET', waiting, vf, int(tag))
    end
  else
    redis.call('HDEL', waiting, job)
  end
  local lease = string.format('%016x', receipt) .. job .. ':' .. int(priority)
  if group then
    lease = lease .. ':' .. group
  end
  redis.call('ZADD', key(best, 4), int(base + visibility), lease)
  if taken > 0 then
    -- The caller took (or will find) one token; the others' are spent here.
    redis.call('LPOP', key(best, 5))
  end
  taken = taken + 1
  out[#out + 1] = best
  out[#out + 1] = job
  out[#out + 1] = priority
  out[#out + 1] = receipt
  if group then
    out[#out + 1] = '=' .. group
  else
    out[#out + 1] = ''
  end
  if taken >= max then
    break
  end
  best, member, score = take()
end
out[1] = taken
if scanned then
  out[2] = next_due()
end
out[3] = clock or -1
return out
