-- Artifacts: the metadata of the files a job left behind. Their bytes live in
-- an object store under `blob`; a row is what makes an artifact visible.
CREATE TABLE artifacts (
    job_id       uuid        NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    name         text        NOT NULL,
    -- The attempt that stored it.
    attempt      bigint      NOT NULL CHECK (attempt >= 1),
    size         bigint      NOT NULL CHECK (size >= 0),
    sha256       text        NOT NULL,
    content_type text        NOT NULL,
    blob         text        NOT NULL,
    created_at   timestamptz NOT NULL,
    PRIMARY KEY (job_id, name)
);
