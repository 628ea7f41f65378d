-- Retention deletes finished jobs oldest first: this index finds them
-- without reading the unfinished ones.
CREATE INDEX jobs_finished_at ON jobs (finished_at)
    WHERE status IN ('succeeded', 'failed', 'cancelled');

-- Deleting a job checks that no idempotency key still names it, and
-- retention deletes a job's keys by job: both look keys up by job.
CREATE INDEX idempotency_keys_job_id ON idempotency_keys (job_id);
