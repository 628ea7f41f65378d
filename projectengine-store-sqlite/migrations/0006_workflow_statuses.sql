-- Workflows add two statuses: `waiting` (held until the jobs it depends on
-- have succeeded) and `awaiting_review` (a result held for a person's
-- approval). SQLite cannot alter a CHECK constraint, and rebuilding the jobs
-- table inside the migration's transaction would cascade its deletes to the
-- tables that refer to it; widening a CHECK changes nothing stored, so the
-- table's definition is edited in place, as SQLite documents for such
-- changes (section 7 of "ALTER TABLE"), and the edit is verified.
PRAGMA writable_schema = ON;
UPDATE sqlite_schema
   SET sql = replace(sql,
       'CHECK (status IN (''queued'', ''running'', ''succeeded'', ''failed'', ''cancelled''))',
       'CHECK (status IN (''queued'', ''waiting'', ''running'', ''awaiting_review'', ''succeeded'', ''failed'', ''cancelled''))')
 WHERE type = 'table' AND name = 'jobs';
PRAGMA writable_schema = RESET;
-- Fails the migration unless the jobs table now takes the new statuses.
CREATE TEMP TABLE workflow_statuses_check (edited INTEGER NOT NULL CHECK (edited = 1));
INSERT INTO workflow_statuses_check
SELECT count(*) FROM sqlite_schema
 WHERE type = 'table' AND name = 'jobs' AND sql LIKE '%''awaiting_review''%';
DROP TABLE workflow_statuses_check;
