-- The last numbered batch of reports a remote agent's attempt had applied,
-- so that a retried batch is applied once.
ALTER TABLE attempts ADD COLUMN last_batch INTEGER NOT NULL DEFAULT 0;
