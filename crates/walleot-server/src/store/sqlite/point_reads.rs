//! Point reads on the calling thread: the status check's key and session, and the
//! single rows a payment or capture reads before it writes.
//!
//! A status check is one indexed read of some ten microseconds of SQLite work. Through
//! the sqlx pool it also pays a hand-off to a worker thread and back for every query and
//! a health check for every acquire: several times the read itself. The reads here run
//! synchronously instead, on read-only rusqlite connections (the same SQLite library
//! as sqlx's), each with its statements prepared once. They never wait: when no
//! connection is idle or the database is busy they answer `None`, and the caller reads
//! through the pool as before. A connection is never held across an `.await`.

use super::columns::Columns;
use super::{key_and_session_sql, key_from_row, session_from_row, JOINED_KEY};
use crate::domain::ports::{KeyAndSession, StoreError};
use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension};
use std::path::Path;
use std::sync::{LazyLock, Mutex};

pub(super) struct PointReads {
    idle: Mutex<Vec<Connection>>,
}

static KEY_AND_SESSION: LazyLock<String> = LazyLock::new(|| key_and_session_sql("?1", "?2"));

impl PointReads {
    /// `connections` read-only connections to the database file at `path`.
    pub(super) fn open(path: &Path, connections: usize) -> Result<Self, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let idle = (0..connections)
            .map(|_| {
                let connection = Connection::open_with_flags(path, flags)?;
                // Never wait for a lock: the pool is the path that waits.
                connection.busy_timeout(std::time::Duration::ZERO)?;
                Ok(connection)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        Ok(PointReads {
            idle: Mutex::new(idle),
        })
    }

    /// Runs `read` on an idle connection; `None` when there is none or SQLite is busy.
    fn run<T>(
        &self,
        read: impl FnOnce(&Connection) -> rusqlite::Result<Result<T, StoreError>>,
    ) -> Option<Result<T, StoreError>> {
        let connection = self.idle.lock().ok()?.pop()?;
        let result = read(&connection);
        if let Ok(mut idle) = self.idle.lock() {
            idle.push(connection);
        }
        match result {
            Ok(answer) => Some(answer),
            Err(rusqlite::Error::SqliteFailure(e, _))
                if matches!(e.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                None
            }
            Err(e) => Some(Err(e.into())),
        }
    }

    /// The one row (or none) that `sql` reads with `params`, mapped by `map`.
    pub(super) fn row<T>(
        &self,
        sql: &str,
        params: impl rusqlite::Params,
        map: impl FnOnce(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Option<Result<Option<T>, StoreError>> {
        self.run(|connection| {
            let found = connection
                .prepare_cached(sql)?
                .query_row(params, |row| Ok(map(row)))
                .optional()?;
            Ok(found.transpose())
        })
    }

    /// See `Store::key_and_session_now`.
    pub(super) fn key_and_session(
        &self,
        key_hash: &str,
        session_id: &str,
    ) -> Option<Result<KeyAndSession, StoreError>> {
        let read = self.row(&KEY_AND_SESSION, (key_hash, session_id), |row| {
            let key = key_from_row(row, &JOINED_KEY)?;
            let session = match row.text_or_null("id")? {
                Some(_) => Some(session_from_row(row)?),
                None => None,
            };
            Ok((Some(key), session))
        })?;
        Some(read.map(|found| found.unwrap_or((None, None))))
    }
}
