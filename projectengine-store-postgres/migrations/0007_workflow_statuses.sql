-- Workflows add two statuses: `waiting` (held until the jobs it depends on
-- have succeeded) and `awaiting_review` (a result held for a person's
-- approval). The transition table in core says how a job moves between them.
ALTER TABLE jobs DROP CONSTRAINT jobs_status_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_status_check CHECK (status IN (
    'queued', 'waiting', 'running', 'awaiting_review', 'succeeded', 'failed', 'cancelled'
));
