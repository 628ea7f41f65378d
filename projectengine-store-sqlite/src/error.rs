//! Maps sqlx errors onto the core [`Error`]: callers never see a driver error.

use projectengine_core::Error;
use sqlx::error::ErrorKind;

/// Converts a sqlx error into the core error; an unavailable or internal
/// error keeps the driver's error as its source.
pub(crate) fn map(err: sqlx::Error) -> Error {
    let err = match err {
        sqlx::Error::Migrate(e) => return map_migrate(*e),
        other => other,
    };
    let mapped = match &err {
        sqlx::Error::Database(db) => map_database(db.as_ref()),
        sqlx::Error::Io(e) => Error::unavailable(format!("SQLite I/O failed: {e}")),
        sqlx::Error::PoolTimedOut => {
            Error::unavailable("timed out waiting for a SQLite connection")
        }
        sqlx::Error::PoolClosed => Error::unavailable("the SQLite pool is closed"),
        sqlx::Error::WorkerCrashed => Error::unavailable("the SQLite connection worker crashed"),
        sqlx::Error::Configuration(e) => {
            Error::invalid("database_url", format!("bad SQLite configuration: {e}"))
        }
        other => {
            tracing::error!(error = %other, "unexpected SQLite error");
            Error::internal(format!("SQLite: {other}"))
        }
    };
    mapped.with_source(err)
}

fn map_database(db: &dyn sqlx::error::DatabaseError) -> Error {
    match db.kind() {
        ErrorKind::UniqueViolation => {
            let message = db.message();
            return Error::conflict(if message.contains("jobs.id") {
                "a job with this id exists"
            } else if message.contains("apps.id") {
                "an app with this id exists"
            } else {
                "a row with this key exists"
            });
        }
        ErrorKind::CheckViolation => {
            return Error::invalid(
                "value",
                format!("refused by the database: {}", db.message()),
            )
        }
        _ => {}
    }
    // https://www.sqlite.org/rescode.html: the primary code is the low byte of
    // the extended one that sqlx reports.
    let code = db
        .code()
        .and_then(|c| c.parse::<i64>().ok())
        .map_or(-1, |c| c & 0xff);
    match code {
        // SQLITE_BUSY, SQLITE_LOCKED: another connection held the lock past
        // the busy timeout. SQLITE_IOERR, SQLITE_FULL, SQLITE_CANTOPEN,
        // SQLITE_READONLY: the file or its disk. The caller may try again.
        5 | 6 | 8 | 10 | 13 | 14 => Error::unavailable(format!("SQLite: {}", db.message())),
        // SQLITE_ERROR with no such table: the schema is not migrated.
        1 if db.message().contains("no such table") => Error::unavailable(format!(
            "SQLite schema missing (run migrations): {}",
            db.message()
        )),
        // SQLITE_TOOBIG: a value past SQLite's length limit. SQLITE_CONSTRAINT
        // (a NOT NULL, a foreign key, a trigger's RAISE): the database refuses
        // the value; the write is rolled back.
        18 => Error::invalid("value", format!("SQLite cannot store it: {}", db.message())),
        19 => Error::invalid(
            "value",
            format!("refused by the database: {}", db.message()),
        ),
        _ => {
            tracing::error!(code, error = %db.message(), "unexpected SQLite error");
            Error::internal(format!("SQLite {code}: {}", db.message()))
        }
    }
}

fn map_migrate(err: sqlx::migrate::MigrateError) -> Error {
    use sqlx::migrate::MigrateError;
    match err {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => map(e),
        other => Error::internal(format!("SQLite migration failed: {other}")).with_source(other),
    }
}

/// Reports a stored value that is not a valid domain value.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::internal(format!("SQLite holds an invalid {what}: {detail}"))
}
