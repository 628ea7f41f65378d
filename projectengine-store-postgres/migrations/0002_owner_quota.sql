-- An owner's queued jobs, counted for the per-owner quota at submission.
CREATE INDEX jobs_queued_owner ON jobs (owner) WHERE status = 'queued';
