-- projectEngine store on SQLite: jobs, their attempts, their event log and
-- their apps. Ids are the 16 bytes of a UUID (v7: byte order is time order);
-- times are microseconds since the Unix epoch, UTC; JSON is text.

CREATE TABLE jobs (
    id               BLOB    PRIMARY KEY NOT NULL,
    owner            TEXT    NOT NULL,
    kind             TEXT    NOT NULL,
    queue            TEXT    NOT NULL,
    prompt           TEXT    NOT NULL,
    params           TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stage            TEXT,
    progress         INTEGER NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    priority         INTEGER NOT NULL,
    max_attempts     INTEGER NOT NULL CHECK (max_attempts >= 0),
    timeout_ms       INTEGER NOT NULL CHECK (timeout_ms >= 0),
    run_at           INTEGER NOT NULL,
    -- The number of the latest attempt: the fencing token.
    attempt          INTEGER NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    attempts_used    INTEGER NOT NULL DEFAULT 0 CHECK (attempts_used >= 0),
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error_code       TEXT,
    error_message    TEXT,
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,
    finished_at      INTEGER,
    updated_at       INTEGER NOT NULL,
    -- The seq of the latest event.
    last_seq         INTEGER NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
) WITHOUT ROWID;

-- Cursor pages of an owner's jobs, both directions.
CREATE INDEX jobs_owner_id ON jobs (owner, id);
-- Due jobs for recovery.
CREATE INDEX jobs_queued_run_at ON jobs (run_at, id) WHERE status = 'queued';
-- An owner's queued jobs, counted for the per-owner quota at submission.
CREATE INDEX jobs_queued_owner ON jobs (owner) WHERE status = 'queued';

CREATE TABLE attempts (
    job_id           BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number           INTEGER NOT NULL CHECK (number >= 1),
    id               BLOB    NOT NULL UNIQUE,
    worker_id        TEXT    NOT NULL,
    status           TEXT    NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'lost')),
    lease_expires_at INTEGER NOT NULL,
    started_at       INTEGER NOT NULL,
    finished_at      INTEGER,
    error_code       TEXT,
    error_message    TEXT,
    PRIMARY KEY (job_id, number)
) WITHOUT ROWID;

-- Expired leases for recovery.
CREATE INDEX attempts_running_lease ON attempts (lease_expires_at) WHERE status = 'running';

-- Append-only: rows are inserted, never updated or deleted (except with their job).
CREATE TABLE job_events (
    job_id  BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     INTEGER NOT NULL CHECK (seq >= 1),
    attempt INTEGER NOT NULL CHECK (attempt >= 0),
    at      INTEGER NOT NULL,
    -- The event's data as serde writes `EventData`: {"type": …, "data": …}.
    data    TEXT    NOT NULL,
    PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;

-- One per job: a later attempt's app replaces an earlier attempt's, same id.
CREATE TABLE apps (
    id         BLOB    PRIMARY KEY NOT NULL,
    job_id     BLOB    NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
    -- The attempt that published it.
    attempt    INTEGER NOT NULL CHECK (attempt >= 1),
    owner      TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    payload    TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) WITHOUT ROWID;

-- Cursor pages of an owner's apps.
CREATE INDEX apps_owner_id ON apps (owner, id);
