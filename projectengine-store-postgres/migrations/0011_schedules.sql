-- Schedules: a cron expression in a time zone creates a job from a template
-- at each tick. `next_fire_at` is the tick to fire next; firing moves it by
-- compare-and-set, in the same transaction as the tick's run and job.
CREATE TABLE schedules (
    id            uuid PRIMARY KEY,
    owner         text NOT NULL,
    name          text NOT NULL,
    cron          text NOT NULL,
    timezone      text NOT NULL,
    template      jsonb NOT NULL,
    overlap       text NOT NULL CHECK (overlap IN ('skip', 'allow')),
    misfire       text NOT NULL CHECK (misfire IN ('skip', 'run_once')),
    enabled       boolean NOT NULL,
    next_fire_at  timestamptz,
    last_job_id   uuid,
    revision      bigint NOT NULL,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX schedules_owner ON schedules (owner, id);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled AND next_fire_at IS NOT NULL;

-- One row per fired tick: its job, or why it had none. The key makes a tick
-- fire once whatever else happens.
CREATE TABLE schedule_runs (
    schedule_id  uuid NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    tick         timestamptz NOT NULL,
    job_id       uuid,
    skipped      text CHECK (skipped IN ('overlap', 'misfire', 'invalid')),
    fired_at     timestamptz NOT NULL,
    PRIMARY KEY (schedule_id, tick)
);
