-- Schedules: a cron expression in a time zone creates a job from a template
-- at each tick. `next_fire_at` is the tick to fire next; firing moves it by
-- compare-and-set, in the same transaction as the tick's run and job.
CREATE TABLE schedules (
    id            BLOB    PRIMARY KEY NOT NULL,
    owner         TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    cron          TEXT    NOT NULL,
    timezone      TEXT    NOT NULL,
    template      TEXT    NOT NULL,
    overlap       TEXT    NOT NULL CHECK (overlap IN ('skip', 'allow')),
    misfire       TEXT    NOT NULL CHECK (misfire IN ('skip', 'run_once')),
    enabled       INTEGER NOT NULL,
    next_fire_at  INTEGER,
    last_job_id   BLOB,
    revision      INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX schedules_owner ON schedules (owner, id);
CREATE INDEX schedules_due ON schedules (next_fire_at) WHERE enabled AND next_fire_at IS NOT NULL;

-- One row per fired tick: its job, or why it had none. The key makes a tick
-- fire once whatever else happens.
CREATE TABLE schedule_runs (
    schedule_id  BLOB    NOT NULL REFERENCES schedules (id) ON DELETE CASCADE,
    tick         INTEGER NOT NULL,
    job_id       BLOB,
    skipped      TEXT    CHECK (skipped IN ('overlap', 'misfire', 'invalid')),
    fired_at     INTEGER NOT NULL,
    PRIMARY KEY (schedule_id, tick)
) WITHOUT ROWID;
