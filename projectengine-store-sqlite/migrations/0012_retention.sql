-- Retention deletes finished jobs oldest first: this index finds them
-- without reading the unfinished ones.
CREATE INDEX jobs_finished_at ON jobs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');
