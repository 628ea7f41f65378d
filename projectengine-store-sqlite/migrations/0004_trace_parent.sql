-- The submitting request's trace context (a W3C traceparent), which the
-- job's attempts continue.
ALTER TABLE jobs ADD COLUMN trace_parent TEXT;
