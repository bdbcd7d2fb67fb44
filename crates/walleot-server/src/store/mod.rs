//! The databases behind the domain's storage ports (`crate::domain::ports`): each has
//! its implementation beside this file, with its SQL and migrations.

mod columns;
mod postgres;
mod rows;
mod sqlite;

pub use crate::domain::ports::*;
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// Opens the store a database URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(PostgresStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => {
                StoreError::Unavailable(e.to_string())
            }
            E::Database(db) => match db.code().as_deref() {
                // PostgreSQL: deadlock detected, serialization failure.
                Some("40P01" | "40001") => StoreError::Contended(e.to_string()),
                // PostgreSQL: connection exceptions (08…), shutting down or starting
                // (57P01–57P03), too many connections, a lock not granted within
                // `lock_timeout`, a statement cancelled, a transaction ended for
                // idling.
                Some(code)
                    if code.starts_with("08")
                        || code.starts_with("57P")
                        || matches!(code, "53300" | "55P03" | "57014" | "25P03") =>
                {
                    StoreError::Unavailable(e.to_string())
                }
                // PostgreSQL text holds no NUL character (SQLite's does); no stored
                // value has one, so such a value is the caller's mistake.
                Some("22021") => StoreError::Unstorable(e.to_string()),
                _ => StoreError::Database(e.to_string()),
            },
            _ => StoreError::Database(e.to_string()),
        }
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {e}"))
    }
}
