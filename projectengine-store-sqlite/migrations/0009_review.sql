-- The review gate: a job submitted with `review` waits in `awaiting_review`
-- after a successful attempt; a rejection keeps the reviewer's comment for
-- the next attempt.
ALTER TABLE jobs ADD COLUMN review INTEGER NOT NULL DEFAULT 0;
ALTER TABLE jobs ADD COLUMN review_comment TEXT;
-- Its webhook reports `awaiting_review` too. SQLite cannot alter a CHECK
-- constraint, and rebuilding the outbox inside the migration's transaction
-- would cascade its deletes to the tries; widening a CHECK changes nothing
-- stored, so the table's definition is edited in place, as SQLite documents
-- for such changes (section 7 of "ALTER TABLE"), and the edit is verified.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (job_status IN (''succeeded'', ''failed'', ''cancelled''))',
       'CHECK (job_status IN (''awaiting_review'', ''succeeded'', ''failed'', ''cancelled''))')
 WHERE type = 'table' AND name = 'webhook_deliveries';
PRAGMA writable_schema = RESET;
-- Fails the migration unless the outbox now takes the new status.
CREATE TEMP TABLE review_outbox_check (edited INTEGER NOT NULL CHECK (edited = 1));
INSERT INTO review_outbox_check
SELECT count(*) FROM sqlite_schema
 WHERE type = 'table' AND name = 'webhook_deliveries' AND sql LIKE '%''awaiting_review''%';
DROP TABLE review_outbox_check;
