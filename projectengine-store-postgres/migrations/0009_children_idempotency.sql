-- Child jobs: a job submitted by another job's running attempt records its
-- parent and the key it was submitted under; (parent, key) is unique, so a
-- retried attempt that submits a key again finds the child it created.
ALTER TABLE jobs ADD COLUMN parent_id uuid REFERENCES jobs (id);
ALTER TABLE jobs ADD COLUMN child_key text;
CREATE UNIQUE INDEX jobs_parent_child_key ON jobs (parent_id, child_key)
    WHERE parent_id IS NOT NULL;

-- Idempotency keys of submissions, per owner: the hash of the request a key
-- first came with and the job it created, kept until `expires_at`. The key
-- is written before its job in the same transaction, so its reference to
-- the job is checked at commit.
CREATE TABLE idempotency_keys (
    owner text NOT NULL,
    key text NOT NULL,
    request_hash text NOT NULL,
    job_id uuid NOT NULL REFERENCES jobs (id) DEFERRABLE INITIALLY DEFERRED,
    expires_at timestamptz NOT NULL,
    PRIMARY KEY (owner, key)
);
CREATE INDEX idempotency_keys_expires_at ON idempotency_keys (expires_at);
