-- Concurrency keys: a job with a key is claimed only while fewer than its
-- limit of its owner's jobs with that key are running. The partial index
-- makes that count read only the running jobs of one owner and key.
ALTER TABLE jobs
    ADD COLUMN concurrency_key   text,
    ADD COLUMN concurrency_limit integer,
    ADD CONSTRAINT jobs_concurrency_check
        CHECK ((concurrency_key IS NULL) = (concurrency_limit IS NULL)
               AND (concurrency_limit IS NULL OR concurrency_limit > 0));

CREATE INDEX jobs_running_by_key ON jobs (owner, concurrency_key)
    WHERE status = 'running' AND concurrency_key IS NOT NULL;
