-- Completion webhooks: what a job notifies, and the outbox its terminal
-- transition writes in the same transaction.

-- The job's own URL, and whether it notifies the deployment-wide one
-- (decided at submission, so the store needs no configuration to decide).
ALTER TABLE jobs
    ADD COLUMN webhook           text,
    ADD COLUMN notify_deployment boolean NOT NULL DEFAULT false;

CREATE TABLE webhook_deliveries (
    id            uuid        PRIMARY KEY,
    job_id        uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    destination   text        NOT NULL CHECK (destination IN ('job', 'deployment')),
    -- The job's URL for destination 'job'; the dispatcher holds the deployment's.
    url           text,
    -- The terminal state reported.
    job_status    text        NOT NULL CHECK (job_status IN ('succeeded', 'failed', 'cancelled')),
    error_code    text,
    error_message text,
    occurred_at   timestamptz NOT NULL,
    status        text        NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    -- Tries recorded: also the fence a try is recorded under.
    tries         bigint      NOT NULL DEFAULT 0 CHECK (tries >= 0),
    -- When due, or until when a claim hides it.
    next_at       timestamptz NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);

-- Due deliveries, for the dispatchers' claims.
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_at, id) WHERE status = 'pending';
-- A job's deliveries.
CREATE INDEX webhook_deliveries_job ON webhook_deliveries (job_id, created_at);

-- Append-only: one row per try.
CREATE TABLE webhook_tries (
    delivery_id uuid        NOT NULL REFERENCES webhook_deliveries (id) ON DELETE CASCADE,
    number      bigint      NOT NULL CHECK (number >= 1),
    at          timestamptz NOT NULL,
    status_code integer,
    latency_ms  bigint      NOT NULL CHECK (latency_ms >= 0),
    error       text,
    PRIMARY KEY (delivery_id, number)
);
