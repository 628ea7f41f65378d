-- The review gate: a job submitted with `review` waits in `awaiting_review`
-- after a successful attempt; a rejection keeps the reviewer's comment for
-- the next attempt. Its webhook reports `awaiting_review` too.
ALTER TABLE jobs
    ADD COLUMN review         boolean NOT NULL DEFAULT false,
    ADD COLUMN review_comment text;

ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_job_status_check;
ALTER TABLE webhook_deliveries ADD CONSTRAINT webhook_deliveries_job_status_check
    CHECK (job_status IN ('awaiting_review', 'succeeded', 'failed', 'cancelled'));
