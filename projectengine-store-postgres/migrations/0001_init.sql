-- projectEngine store: jobs, their attempts, their event log and their apps.
-- Every table lives in the connection's current schema (search_path).

CREATE TABLE jobs (
    id               uuid        PRIMARY KEY,
    owner            text        NOT NULL,
    kind             text        NOT NULL,
    queue            text        NOT NULL,
    prompt           text        NOT NULL,
    params           jsonb       NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    stage            text,
    progress         smallint    NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 100),
    priority         integer     NOT NULL,
    max_attempts     bigint      NOT NULL CHECK (max_attempts >= 0),
    timeout_ms       bigint      NOT NULL CHECK (timeout_ms >= 0),
    run_at           timestamptz NOT NULL,
    -- The number of the latest attempt: the fencing token.
    attempt          bigint      NOT NULL DEFAULT 0 CHECK (attempt >= 0),
    attempts_used    bigint      NOT NULL DEFAULT 0 CHECK (attempts_used >= 0),
    cancel_requested boolean     NOT NULL DEFAULT false,
    error_code       text,
    error_message    text,
    created_at       timestamptz NOT NULL,
    started_at       timestamptz,
    finished_at      timestamptz,
    updated_at       timestamptz NOT NULL,
    -- The seq of the latest event; the row lock on it serializes appenders.
    last_seq         bigint      NOT NULL DEFAULT 0 CHECK (last_seq >= 0)
);

-- Cursor pages of an owner's jobs, both directions.
CREATE INDEX jobs_owner_id ON jobs (owner, id);
-- Due jobs for recovery (and claim's `run_at <= now()`).
CREATE INDEX jobs_queued_run_at ON jobs (run_at, id) WHERE status = 'queued';

CREATE TABLE attempts (
    id               uuid        PRIMARY KEY,
    job_id           uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    number           bigint      NOT NULL CHECK (number >= 1),
    worker_id        text        NOT NULL,
    status           text        NOT NULL
        CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled', 'timed_out', 'lost')),
    lease_expires_at timestamptz NOT NULL,
    started_at       timestamptz NOT NULL,
    finished_at      timestamptz,
    error_code       text,
    error_message    text,
    UNIQUE (job_id, number)
);

-- Expired leases for recovery.
CREATE INDEX attempts_running_lease ON attempts (lease_expires_at) WHERE status = 'running';

-- Append-only: rows are inserted, never updated or deleted (except with their job).
CREATE TABLE job_events (
    job_id  uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq     bigint      NOT NULL CHECK (seq >= 1),
    attempt bigint      NOT NULL CHECK (attempt >= 0),
    at      timestamptz NOT NULL,
    -- EventData's serde tag (`type`) and content (`data`, absent for unit kinds).
    kind    text        NOT NULL,
    data    jsonb,
    PRIMARY KEY (job_id, seq)
);

-- One per job: a later attempt's app replaces an earlier attempt's, same id.
CREATE TABLE apps (
    id         uuid        PRIMARY KEY,
    job_id     uuid        NOT NULL UNIQUE REFERENCES jobs (id) ON DELETE CASCADE,
    -- The attempt that published it.
    attempt    bigint      NOT NULL CHECK (attempt >= 1),
    owner      text        NOT NULL,
    name       text        NOT NULL,
    payload    jsonb       NOT NULL,
    created_at timestamptz NOT NULL
);

-- Cursor pages of an owner's apps.
CREATE INDEX apps_owner_id ON apps (owner, id);
