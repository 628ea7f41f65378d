-- The trace context (W3C traceparent) of the request that submitted a job,
-- which its attempts' spans continue. NULL: none was carried.
ALTER TABLE jobs ADD COLUMN trace_parent text;
