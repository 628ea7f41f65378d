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
        sqlx::Error::Io(e) => Error::unavailable(format!("PostgreSQL connection failed: {e}")),
        sqlx::Error::Tls(e) => Error::unavailable(format!("PostgreSQL TLS failed: {e}")),
        sqlx::Error::PoolTimedOut => {
            Error::unavailable("timed out waiting for a PostgreSQL connection")
        }
        sqlx::Error::PoolClosed => Error::unavailable("the PostgreSQL pool is closed"),
        sqlx::Error::WorkerCrashed => {
            Error::unavailable("the PostgreSQL connection worker crashed")
        }
        sqlx::Error::Protocol(e) => Error::unavailable(format!("PostgreSQL protocol error: {e}")),
        sqlx::Error::Configuration(e) => {
            Error::invalid("database_url", format!("bad PostgreSQL configuration: {e}"))
        }
        other => {
            tracing::error!(error = %other, "unexpected PostgreSQL error");
            Error::internal(format!("PostgreSQL: {other}"))
        }
    };
    mapped.with_source(err)
}

fn map_database(db: &dyn sqlx::error::DatabaseError) -> Error {
    let code = db.code();
    let code = code.as_deref().unwrap_or("");
    match db.kind() {
        ErrorKind::UniqueViolation => {
            return Error::conflict(match db.constraint() {
                Some("jobs_pkey") => "a job with this id exists",
                Some("apps_pkey") => "an app with this id exists",
                _ => "a row with this key exists",
            })
        }
        ErrorKind::CheckViolation => {
            return Error::invalid(
                "value",
                format!("refused by the database: {}", db.message()),
            )
        }
        _ => {}
    }
    // https://www.postgresql.org/docs/current/errcodes-appendix.html
    match code {
        // connection_exception, insufficient_resources, operator_intervention
        // (admin shutdown, query canceled by statement_timeout), serialization
        // failure and deadlock: transient, the caller may try again.
        c if c.starts_with("08") || c.starts_with("53") || c.starts_with("57") => {
            Error::unavailable(format!("PostgreSQL: {}", db.message()))
        }
        "40001" | "40P01" => Error::unavailable(format!("PostgreSQL: {}", db.message())),
        // data_exception: a value PostgreSQL cannot hold, such as a NUL
        // character in text or JSON.
        c if c.starts_with("22") => Error::invalid(
            "value",
            format!("PostgreSQL cannot store it: {}", db.message()),
        ),
        // undefined_table: the schema is not migrated.
        "42P01" => Error::unavailable(format!(
            "PostgreSQL schema missing (run migrations): {}",
            db.message()
        )),
        _ => {
            tracing::error!(code, error = %db.message(), "unexpected PostgreSQL error");
            Error::internal(format!("PostgreSQL {code}: {}", db.message()))
        }
    }
}

fn map_migrate(err: sqlx::migrate::MigrateError) -> Error {
    use sqlx::migrate::MigrateError;
    match err {
        MigrateError::Execute(e) | MigrateError::ExecuteMigration(e, _) => map(e),
        other => {
            Error::internal(format!("PostgreSQL migration failed: {other}")).with_source(other)
        }
    }
}

/// Converts a value the database holds into a domain type, or reports the
/// stored row as corrupt.
pub(crate) fn corrupt(what: &str, detail: impl std::fmt::Display) -> Error {
    Error::internal(format!("PostgreSQL holds an invalid {what}: {detail}"))
}
