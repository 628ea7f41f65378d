-- Child jobs: a job submitted by another job's running attempt records its
-- parent and the key it was submitted under; (parent, key) is unique, so a
-- retried attempt that submits a key again finds the child it created.
ALTER TABLE jobs ADD COLUMN parent_id BLOB REFERENCES jobs (id);
ALTER TABLE jobs ADD COLUMN child_key TEXT;
CREATE UNIQUE INDEX jobs_parent_child_key ON jobs (parent_id, child_key)
    WHERE parent_id IS NOT NULL;

-- Idempotency keys of submissions, per owner: the hash of the request a key
-- first came with and the job it created, kept until `expires_at`
-- (microseconds since the epoch).
CREATE TABLE idempotency_keys (
    owner TEXT NOT NULL,
    key TEXT NOT NULL,
    request_hash TEXT NOT NULL,
    job_id BLOB NOT NULL REFERENCES jobs (id),
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (owner, key)
) WITHOUT ROWID;
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
