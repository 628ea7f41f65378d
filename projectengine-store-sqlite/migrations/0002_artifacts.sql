-- Artifacts: the metadata of the files a job left behind. Their bytes live in
-- an object store under `blob`; a row is what makes an artifact visible.
CREATE TABLE artifacts (
    job_id       BLOB    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    -- Compared byte by byte (BINARY), so a job's list is in the names' byte order.
    name         TEXT    NOT NULL,
    -- The attempt that stored it.
    attempt      INTEGER NOT NULL CHECK (attempt >= 1),
    size         INTEGER NOT NULL CHECK (size >= 0),
    sha256       TEXT    NOT NULL,
    content_type TEXT    NOT NULL,
    blob         TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    PRIMARY KEY (job_id, name)
) WITHOUT ROWID;
