//! The SQLite store: one file, zero set-up.
//!
//! Writes run on one thread, one connection, in groups (see [`writer`]); reads use a
//! pool of their own and, thanks to WAL, never wait for the writer. Commits use
//! `synchronous = FULL`: an answer is sent only once its change is on disk.

/// A static of SQL written with `$N` placeholders (see `rows`), as SQLite numbers them.
macro_rules! sqlite {
    ($name:ident = $sql:expr) => {
        static $name: std::sync::LazyLock<String> =
            std::sync::LazyLock::new(|| crate::store::rows::sqlite_sql(&$sql));
    };
}

mod events;
mod idempotency;
mod ledger;
mod mandates;
mod merchants;
mod payers;
mod plans;
mod point_reads;
mod sessions;
mod webhooks;
mod writer;

use super::columns::{self};
use super::rows::*;
use crate::domain::ports::{CoveredPayment, IdempotencyCompletion, PlanOutcome, Store, StoreError};
use crate::domain::receipts::SigningKeyRecord;
use crate::domain::sessions::{SessionEvent, SessionRecord};
use async_trait::async_trait;
use rusqlite::{params, Connection};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::Row;
use std::str::FromStr;
use std::time::Duration;
use walleot_api::SessionStatus;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

pub struct SqliteStore {
    /// Every write, on the writer's thread (see [`writer`]).
    writer: writer::Writer,
    reader: SqlitePool,
    /// Ids of sessions whose status changed, after commit (see `session_changes`).
    changes: tokio::sync::broadcast::Sender<String>,
    /// Reads of the status check on the calling thread; none for a database in memory.
    point_reads: Option<point_reads::PointReads>,
}

/// Ids kept for slow receivers of session changes before they lag.
const CHANGES_BUFFER: usize = 4096;

/// A new session, and the payment that covers it when its precondition holds: the
/// payment is tried in a savepoint of its own, so that a stale budget or an empty wallet
/// leaves the session pending with its pending answer.
fn new_session_in(
    db: &Connection,
    session: &SessionRecord,
    created: &SessionEvent,
    completion: Option<&IdempotencyCompletion>,
    covered: Option<&CoveredPayment>,
) -> Result<Option<SessionRecord>, StoreError> {
    insert_session_in(db, session, created)?;
    if let Some(covered) = covered {
        db.execute_batch("SAVEPOINT covered")?;
        let paid = match plans::apply_in(db, &covered.plan) {
            Ok(PlanOutcome::Applied(paid)) => Some(paid),
            Ok(_) | Err(StoreError::Ledger(_)) => None,
            Err(e) => return Err(e),
        };
        if paid.is_none() {
            db.execute_batch("ROLLBACK TO covered")?;
        }
        db.execute_batch("RELEASE covered")?;
        if let Some(paid) = paid {
            if let Some(done) = &covered.completion {
                idempotency::complete_in(db, done)?;
            }
            return Ok(Some(paid));
        }
    }
    if let Some(done) = completion {
        idempotency::complete_in(db, done)?;
    }
    Ok(None)
}

/// An exclusive lock on `PATH.lock`, beside the database, held until dropped.
async fn migration_turn(path: &std::path::Path) -> Result<std::fs::File, StoreError> {
    let mut lock_path = path.as_os_str().to_owned();
    lock_path.push(".lock");
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| StoreError::Database(e.to_string()))?
    .map_err(|e: std::io::Error| {
        StoreError::Database(format!("locking the database to migrate it: {e}"))
    })
}

fn insert_session_in(
    db: &Connection,
    session: &SessionRecord,
    created: &SessionEvent,
) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT INTO sessions (id, merchant_id, livemode, amount, currency, description, \
                               status, created_at, expires_at, updated_at, capture_method, metadata, \
                               customer) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        session.id,
        session.merchant_id,
        session.livemode,
        session.amount,
        session.currency.code(),
        session.description,
        session.status.as_str(),
        session.created_at,
        session.expires_at,
        session.updated_at,
        session.capture_method.as_str(),
        (!session.metadata.is_empty())
            .then(|| serde_json::to_string(&session.metadata).expect("string maps serialize")),
        session.customer,
    ])?;
    insert_event(db, created)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at a `sqlite://PATH` URL and brings its
    /// schema up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let path = options.get_filename();
        let in_memory = url.contains(":memory:")
            || url.contains("mode=memory")
            || path.to_string_lossy().starts_with("file:sqlx-in-memory");
        // Processes starting together on one file take turns to migrate it: sqlx takes
        // no lock of its own on SQLite, and two would apply the same migration.
        let turn = match in_memory {
            true => None,
            false => Some(migration_turn(path).await?),
        };
        // Migrations run through sqlx, on a connection of their own.
        let migrations = SqlitePoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&migrations).await?;
        drop(turn);
        // A database in memory lives in its connections alone: the writer's keeps it.
        let writer = writer::Writer::open(path, in_memory)?;
        migrations.close().await;
        // Reads run on connections of their own (WAL lets them proceed beside the writer);
        // enough of them that concurrent requests rarely queue for one.
        let reader = SqlitePoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone().read_only(true))
            .await?;
        let point_reads = if in_memory {
            None
        } else {
            // Two connections per core: each worker thread finds one idle.
            let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
            match point_reads::PointReads::open(path, 2 * cores) {
                Ok(reads) => Some(reads),
                Err(e) => {
                    tracing::warn!(error = %e, "status checks read through the pool");
                    None
                }
            }
        };
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_BUFFER);
        Ok(SqliteStore {
            writer,
            reader,
            changes,
            point_reads,
        })
    }

    /// What `read` finds on the calling thread (see [`point_reads`]); `None` when it
    /// cannot read now, and the caller reads through the pool.
    fn read_now<T>(
        &self,
        read: impl FnOnce(&point_reads::PointReads) -> Option<Result<T, StoreError>>,
    ) -> Option<Result<T, StoreError>> {
        self.point_reads.as_ref().and_then(read)
    }

    /// Tells the watchers of a session that it changed; nobody listening is fine.
    fn changed(&self, session_id: &str) {
        let _ = self.changes.send(session_id.to_string());
    }
}

fn insert_event(db: &Connection, event: &SessionEvent) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT INTO session_events (id, session_id, type, from_status, to_status, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        event.id,
        event.session_id,
        event.kind,
        event.from_status.map(|s| s.as_str()),
        event.to_status.as_str(),
        event.created_at,
    ])?;
    Ok(())
}

#[async_trait]
impl Store for SqliteStore {
    /// Answered on the calling thread, without waiting on anything (see
    /// [`point_reads`]); `None` for a database in memory or when the file is busy.
    async fn key_and_session(
        &self,
        key_hash: &str,
        session_id: &str,
    ) -> Option<Result<crate::domain::ports::KeyAndSession, StoreError>> {
        self.point_reads
            .as_ref()?
            .key_and_session(key_hash, session_id)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let name = name.to_string();
        self.writer
            .run(move |db| {
                db.prepare_cached("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)")?
                    .execute(params![name, fresh])?;
                Ok(db
                    .prepare_cached("SELECT value FROM settings WHERE name = ?")?
                    .query_row([&name], |row| row.get(0))?)
            })
            .await
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "INSERT INTO signing_keys (kid, seed, created_at) VALUES (?, ?, ?)",
                )?
                .execute(params![key.kid, key.seed.to_vec(), key.created_at])?;
                Ok(())
            })
            .await
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(SIGNING_KEYS)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(signing_key_from_row)
            .collect()
    }
}
