-- no-transaction
-- Workflows add two statuses: `waiting` (held until the jobs it depends on
-- have succeeded) and `awaiting_review` (a result held for a person's
-- approval). SQLite cannot alter a CHECK constraint, so the jobs table is
-- rebuilt the way SQLite documents (with foreign keys off, in one
-- transaction, checked before it commits); the rows and their ids stay.
PRAGMA foreign_keys = OFF;
BEGIN IMMEDIATE;
CREATE TABLE jobs_new (
    id                BLOB    PRIMARY KEY NOT NULL,
    owner             TEXT    NOT NULL,
    kind              TEXT    NOT NULL,
    queue             TEXT    NOT NULL,
    prompt            TEXT    NOT NULL,
    params            TEXT    NOT NULL,
    status            TEXT    NOT NULL
        CHECK (status IN ('queued', 'waiting', 'running', 'awaiting_review',
                          'succeeded', 'failed', 'cancelled')),
    stage             TEXT,
    progress          INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    priority          INTEGER NOT NULL,
    max_attempts      INTEGER NOT NULL CHECK (max_attempts >= 0),
    timeout_ms        INTEGER NOT NULL CHECK (timeout_ms >= 0),
    run_at            INTEGER NOT NULL,
    -- The number of the latest attempt: the fencing token.
    attempt           INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    attempts_used     INTEGER NOT NULL DEFAULT 0 CHECK (attempts_used >= 0),
    cancel_requested  INTEGER NOT NULL DEFAULT 0,
    error_code        TEXT,
    error_message     TEXT,
    created_at        INTEGER NOT NULL,
    started_at        INTEGER,
    finished_at       INTEGER,
    updated_at        INTEGER NOT NULL,
    -- The seq of the latest event.
    last_seq          INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0),
    webhook           TEXT,
    notify_deployment INTEGER NOT NULL DEFAULT 0,
    trace_parent      TEXT
) WITHOUT ROWID;
INSERT INTO jobs_new (
    id, owner, kind, queue, prompt, params, status, stage, progress, priority,
    max_attempts, timeout_ms, run_at, attempt, attempts_used, cancel_requested,
    error_code, error_message, created_at, started_at, finished_at, updated_at,
    last_seq, webhook, notify_deployment, trace_parent
)
SELECT
    id, owner, kind, queue, prompt, params, status, stage, progress, priority,
    max_attempts, timeout_ms, run_at, attempt, attempts_used, cancel_requested,
    error_code, error_message, created_at, started_at, finished_at, updated_at,
    last_seq, webhook, notify_deployment, trace_parent
FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_new RENAME TO jobs;
-- Cursor pages of an owner's jobs, both directions.
CREATE INDEX jobs_owner_id ON jobs (owner, id);
-- Due jobs for recovery.
CREATE INDEX jobs_queued_run_at ON jobs (run_at, id) WHERE status = 'queued';
-- An owner's queued jobs, counted for the per-owner quota at submission.
CREATE INDEX jobs_queued_owner ON jobs (owner) WHERE status = 'queued';
COMMIT;
PRAGMA foreign_keys = ON;
