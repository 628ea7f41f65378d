-- The depth of a named queue, read at one instant.
-- KEYS: ready, delayed, inflight
return {
  redis.call('ZCARD', KEYS[1]),
  redis.call('ZCARD', KEYS[2]),
  redis.call('ZCARD', KEYS[3]),
}
