-- Completion webhooks: what a job notifies, and the outbox its terminal
-- transition writes in the same transaction.

-- The job's own URL, and whether it notifies the deployment-wide one
-- (decided at submission, so the store needs no configuration to decide).
ALTER TABLE jobs ADD COLUMN webhook TEXT;
ALTER TABLE jobs ADD COLUMN notify_deployment INTEGER NOT NULL DEFAULT 0;

CREATE TABLE webhook_deliveries (
    id            BLOB    PRIMARY KEY NOT NULL,
    job_id        BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    destination   TEXT    NOT NULL CHECK (destination IN ('job', 'deployment')),
    -- The job's URL for destination 'job'; the dispatcher holds the deployment's.
    url           TEXT,
    -- The terminal state reported.
    job_status    TEXT    NOT NULL CHECK (job_status IN ('succeeded', 'failed', 'cancelled')),
    error_code    TEXT,
    error_message TEXT,
    occurred_at   INTEGER NOT NULL,
    status        TEXT    NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Tries recorded: also the fence a try is recorded under.
    tries         INTEGER NOT NULL DEFAULT 0 CHECK (tries >= 0),
    -- When due, or until when a claim hides it.
    next_at       INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;

-- Due deliveries, for the dispatchers' claims.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, id) WHERE status = 'pending';
-- A job's deliveries.
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, created_at);

-- Append-only: one row per try.
CREATE TABLE webhook_tries (
    delivery_id BLOB    NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    number      INTEGER NOT NULL CHECK (number >= 1),
    at          INTEGER NOT NULL,
    status_code INTEGER,
    latency_ms  INTEGER NOT NULL CHECK (latency_ms >= 0),
    error       TEXT,
    PRIMARY KEY (delivery_id, number)
) WITHOUT ROWID;
