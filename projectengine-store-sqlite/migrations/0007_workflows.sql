-- Workflows: a job may belong to a project of its owner, and depend on other
-- jobs of its owner. `depends_on` is kept on the job (a JSON array of ids,
-- what it waits for, as the job shows it); `job_dependencies` indexes the
-- same edges the other way, for the transitions that release or cancel a
-- job's dependents.
ALTER TABLE jobs ADD COLUMN project TEXT;
ALTER TABLE jobs ADD COLUMN depends_on TEXT NOT NULL DEFAULT '[]';

CREATE TABLE job_dependencies (
    job_id     BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    depends_on BLOB NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    PRIMARY KEY (job_id, depends_on)
) WITHOUT ROWID;

-- A job's dependents, when it ends.
CREATE INDEX job_dependencies_depends_on ON job_dependencies (depends_on, job_id);
-- An owner's projects, and the job list filtered by project or kind.
CREATE INDEX jobs_owner_project ON jobs (owner, project, id) WHERE project IS NOT NULL;
CREATE INDEX jobs_owner_kind ON jobs (owner, kind, id);
