-- Removes a delivered entry for good, if the receipt is its current delivery's.
-- KEYS: inflight, leases
-- ARGV: job id, receipt
-- Returns 1 if acked, 0 if the receipt was stale.
local lease = redis.call('HGET', KEYS[2], ARGV[1])
if not lease then
  return 0
end
local receipt = split_lease(lease)
if receipt ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
return 1
