//! The SQLite store: one file, zero set-up.
//!
//! Writes go through a pool of a single connection and start with `BEGIN IMMEDIATE`,
//! so that writers queue for the lock instead of failing with "database is locked";
//! reads use a separate pool and, thanks to WAL, never wait for a writer. Commits use
//! `synchronous = FULL`: an answer is sent only once its change is on disk.

mod ledger;
mod payers;

use super::{
    ApiKeyRecord, IdempotencyClaim, IdempotencyCompletion, Merchant, SessionPage, SessionStore,
    StoreError, Transition,
};
use crate::domain::ledger::{LedgerError, TransferState};
use crate::domain::sessions::{SessionEvent, SessionRecord};
use crate::domain::Mode;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;
use walleot_api::{CaptureMethod, CaptureStatus, SessionStatus};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const SESSION_COLUMNS: &str = "id, merchant_id, livemode, amount, currency, description, \
                               status, created_at, expires_at, updated_at, capture_method, capture_status";

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// New sessions and payments go to the group committer (see [`group_commit`]).
    jobs: tokio::sync::mpsc::Sender<WriteJob>,
    /// Ids of sessions whose status changed, after commit (see `session_changes`).
    changes: tokio::sync::broadcast::Sender<String>,
}

/// Ids kept for slow receivers of session changes before they lag.
const CHANGES_BUFFER: usize = 4096;

type Reply<T> = tokio::sync::oneshot::Sender<Result<T, StoreError>>;

/// A write of the hot paths, with the answer channel of the request that sent it.
enum WriteJob {
    NewSession {
        session: SessionRecord,
        created: SessionEvent,
        completion: Option<IdempotencyCompletion>,
        done: Reply<()>,
    },
    Payment {
        payment: crate::store::SessionPayment,
        now_ms: i64,
        done: Reply<crate::store::PayOutcome>,
    },
}

/// What one job of a group came to, kept until the group's commit.
enum Outcome {
    NewSession(Result<(), StoreError>, Reply<()>),
    Payment(
        Result<crate::store::PayOutcome, StoreError>,
        Reply<crate::store::PayOutcome>,
    ),
}

impl Outcome {
    /// Answers the request: its own result once committed, else the commit's failure.
    fn answer(self, commit: &Result<(), String>) {
        let failed = |e: &String| StoreError::WriteFailed(e.clone());
        match (self, commit) {
            (Outcome::NewSession(r, done), Ok(())) => drop(done.send(r)),
            (Outcome::NewSession(_, done), Err(e)) => drop(done.send(Err(failed(e)))),
            (Outcome::Payment(r, done), Ok(())) => drop(done.send(r)),
            (Outcome::Payment(_, done), Err(e)) => drop(done.send(Err(failed(e)))),
        }
    }
}

/// Most sessions committed by one transaction.
const GROUP_MAX: usize = 256;

/// Group commit of the hot writes (new sessions, payments): whatever jobs are waiting
/// when the writer is free go into one transaction, each in a savepoint of its own, in
/// arrival order, and one `fsync` makes them all durable before any is answered. Under
/// load many requests share a sync; alone, a request commits at once. A job that fails
/// is rolled back to its savepoint and fails alone.
async fn group_commit(
    writer: SqlitePool,
    mut queue: tokio::sync::mpsc::Receiver<WriteJob>,
    changes: tokio::sync::broadcast::Sender<String>,
) {
    while let Some(first) = queue.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP_MAX {
            match queue.try_recv() {
                Ok(next) => group.push(next),
                Err(_) => break,
            }
        }
        let mut outcomes = Vec::with_capacity(group.len());
        let mut jobs = group.into_iter();
        let committed: Result<(), StoreError> = async {
            let mut tx = writer.begin_with("BEGIN IMMEDIATE").await?;
            for job in jobs.by_ref() {
                sqlx::query("SAVEPOINT job").execute(&mut *tx).await?;
                let (failed, outcome) = match job {
                    WriteJob::NewSession {
                        session,
                        created,
                        completion,
                        done,
                    } => {
                        let r = insert_session_in(&mut tx, &session, &created, completion.as_ref())
                            .await;
                        (r.is_err(), Outcome::NewSession(r, done))
                    }
                    WriteJob::Payment {
                        payment,
                        now_ms,
                        done,
                    } => {
                        let r = ledger::pay_session_in(&mut tx, &payment, now_ms).await;
                        (r.is_err(), Outcome::Payment(r, done))
                    }
                };
                outcomes.push(outcome);
                if failed {
                    sqlx::query("ROLLBACK TO job").execute(&mut *tx).await?;
                }
                sqlx::query("RELEASE job").execute(&mut *tx).await?;
            }
            tx.commit().await?;
            Ok(())
        }
        .await;
        let commit = committed.map_err(|e| e.to_string());
        if commit.is_ok() {
            for outcome in &outcomes {
                if let Outcome::Payment(Ok(crate::store::PayOutcome::Paid(paid)), _) = outcome {
                    let _ = changes.send(paid.id.clone());
                }
            }
        }
        for outcome in outcomes {
            outcome.answer(&commit);
        }
        // Jobs never reached because the transaction failed early.
        for job in jobs {
            let e = commit.clone().err().unwrap_or_default();
            match job {
                WriteJob::NewSession { done, .. } => {
                    drop(done.send(Err(StoreError::WriteFailed(e))))
                }
                WriteJob::Payment { done, .. } => drop(done.send(Err(StoreError::WriteFailed(e)))),
            }
        }
    }
}

impl SqliteStore {
    /// Queues a hot write for the group committer and waits for its answer.
    async fn group_write<T>(
        &self,
        job: impl FnOnce(Reply<T>) -> WriteJob,
    ) -> Result<T, StoreError> {
        let (done, answer) = tokio::sync::oneshot::channel();
        let gone = || StoreError::WriteFailed("the group committer has stopped".into());
        self.jobs.send(job(done)).await.map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }
}

async fn insert_session_in(
    tx: &mut Transaction<'static, Sqlite>,
    session: &SessionRecord,
    created: &SessionEvent,
    completion: Option<&IdempotencyCompletion>,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, merchant_id, livemode, amount, currency, description, \
                               status, created_at, expires_at, updated_at, capture_method) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&session.id)
    .bind(&session.merchant_id)
    .bind(session.livemode)
    .bind(session.amount)
    .bind(session.currency.code())
    .bind(&session.description)
    .bind(session.status.as_str())
    .bind(session.created_at)
    .bind(session.expires_at)
    .bind(session.updated_at)
    .bind(session.capture_method.as_str())
    .execute(&mut **tx)
    .await?;
    insert_event(tx, created).await?;
    if let Some(done) = completion {
        complete_in(tx, done).await?;
    }
    Ok(())
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
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        MIGRATOR.run(&writer).await?;
        // Reads run on connections of their own (WAL lets them proceed beside the writer);
        // enough of them that concurrent requests rarely queue for one.
        let reader = SqlitePoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.read_only(true))
            .await?;
        let (jobs, queue) = tokio::sync::mpsc::channel(GROUP_MAX * 4);
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_BUFFER);
        tokio::spawn(group_commit(writer.clone(), queue, changes.clone()));
        Ok(SqliteStore {
            writer,
            reader,
            jobs,
            changes,
        })
    }

    async fn write(&self) -> Result<Transaction<'static, Sqlite>, StoreError> {
        Ok(self.writer.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// Tells the watchers of a session that it changed; nobody listening is fine.
    fn changed(&self, session_id: &str) {
        let _ = self.changes.send(session_id.to_string());
    }
}

fn corrupt(what: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(what.to_string())
}

fn session_from_row(row: &SqliteRow) -> Result<SessionRecord, StoreError> {
    let currency: String = row.try_get("currency")?;
    let status: String = row.try_get("status")?;
    Ok(SessionRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        livemode: row.try_get("livemode")?,
        amount: row.try_get("amount")?,
        currency: currency.parse().map_err(corrupt)?,
        description: row.try_get("description")?,
        status: status.parse().map_err(corrupt)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        updated_at: row.try_get("updated_at")?,
        capture_method: match row.try_get::<String, _>("capture_method")?.as_str() {
            "manual" => CaptureMethod::Manual,
            _ => CaptureMethod::Automatic,
        },
        capture_status: row
            .try_get::<Option<String>, _>("capture_status")?
            .map(|s| CaptureStatus::parse(&s).ok_or_else(|| corrupt(format!("capture status {s}"))))
            .transpose()?,
    })
}

fn key_from_row(row: &SqliteRow) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        merchant_name: row.try_get("merchant_name")?,
        mode: Mode::from_livemode(row.try_get("livemode")?),
        hash: row.try_get("hash")?,
        prefix: row.try_get("prefix")?,
        created_at: row.try_get("created_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn merchant_from_row(row: &SqliteRow) -> Result<Merchant, StoreError> {
    Ok(Merchant {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
    })
}

async fn insert_event(
    tx: &mut Transaction<'static, Sqlite>,
    event: &SessionEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_events (id, session_id, type, from_status, to_status, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&event.id)
    .bind(&event.session_id)
    .bind(&event.kind)
    .bind(event.from_status.map(|s| s.as_str()))
    .bind(event.to_status.as_str())
    .bind(event.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn complete_in(
    tx: &mut Transaction<'static, Sqlite>,
    done: &IdempotencyCompletion,
) -> Result<(), StoreError> {
    sqlx::query(
        "UPDATE idempotency_keys SET response_status = ?, response_body = ? \
         WHERE scope = ? AND key = ? AND response_status IS NULL",
    )
    .bind(i64::from(done.status))
    .bind(&done.body)
    .bind(&done.scope)
    .bind(&done.key)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.reader).await?;
        Ok(())
    }

    fn session_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT OR IGNORE INTO settings (name, value) VALUES (?, ?)")
            .bind(name)
            .bind(&fresh)
            .execute(&mut *tx)
            .await?;
        let value: Vec<u8> = sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
            .bind(name)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(value)
    }

    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO merchants (id, name, created_at) VALUES (?, ?, ?)")
            .bind(&merchant.id)
            .bind(&merchant.name)
            .bind(merchant.created_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_merchant(&self, id_or_name: &str) -> Result<Option<Merchant>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM merchants WHERE id = ?1 OR name = ?1")
            .bind(id_or_name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(merchant_from_row)
            .transpose()
    }

    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM merchants ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(merchant_from_row)
            .collect()
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO api_keys (id, merchant_id, livemode, hash, prefix, created_at, revoked_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.merchant_id)
        .bind(key.mode.livemode())
        .bind(&key.hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT k.id, k.merchant_id, m.name AS merchant_name, k.livemode, k.hash, k.prefix, \
                    k.created_at, k.revoked_at \
             FROM api_keys k JOIN merchants m ON m.id = k.merchant_id WHERE k.hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(key_from_row)
        .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT k.id, k.merchant_id, m.name AS merchant_name, k.livemode, k.hash, k.prefix, \
                    k.created_at, k.revoked_at \
             FROM api_keys k JOIN merchants m ON m.id = k.merchant_id \
             ORDER BY k.created_at, k.id",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(key_from_row)
        .collect()
    }

    async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_session(
        &self,
        session: &SessionRecord,
        created: &SessionEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError> {
        self.group_write(|done| WriteJob::NewSession {
            session: session.clone(),
            created: created.clone(),
            completion: completion.cloned(),
            done,
        })
        .await
    }

    async fn get_session(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ? AND merchant_id = ? AND livemode = ?"
        ))
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(session_from_row)
        .transpose()
    }

    async fn session_seq(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT seq FROM sessions WHERE id = ? AND merchant_id = ? AND livemode = ?",
        )
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn list_sessions(
        &self,
        merchant_id: &str,
        livemode: bool,
        status: Option<SessionStatus>,
        before_seq: Option<i64>,
        now_ms: i64,
        limit: i64,
    ) -> Result<SessionPage, StoreError> {
        let status_filter = match status {
            None => "1 = 1",
            Some(SessionStatus::Pending) => "status = 'pending' AND expires_at > ?4",
            Some(SessionStatus::Expired) => {
                "(status = 'expired' OR (status = 'pending' AND expires_at <= ?4))"
            }
            Some(_) => "status = ?5",
        };
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE merchant_id = ?1 AND livemode = ?2 AND seq < ?3 AND {status_filter} \
             ORDER BY seq DESC LIMIT ?6"
        ))
        .bind(merchant_id)
        .bind(livemode)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(now_ms)
        .bind(status.map(|s| s.as_str()))
        .bind(limit + 1)
        .fetch_all(&self.reader)
        .await?;
        let mut sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = sessions.len() as i64 > limit;
        sessions.truncate(limit as usize);
        Ok(SessionPage { sessions, has_more })
    }

    async fn transition(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        to: SessionStatus,
        now_ms: i64,
    ) -> Result<Transition, StoreError> {
        if matches!(to, SessionStatus::Pending | SessionStatus::Paid) {
            // A session is paid only through the ledger (`pay_session`).
            return Err(StoreError::Corrupt(format!(
                "no transition to {to} outside the ledger"
            )));
        }
        let mut tx = self.write().await?;
        let updated = sqlx::query(&format!(
            "UPDATE sessions SET status = ?1, updated_at = ?2, \
                 expires_at = CASE WHEN ?1 = 'expired' THEN MIN(expires_at, ?2) ELSE expires_at END \
             WHERE id = ?3 AND merchant_id = ?4 AND livemode = ?5 AND status = 'pending' \
               AND (?1 = 'expired' OR expires_at > ?2) \
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(to.as_str())
        .bind(now_ms)
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match updated {
            Some(row) => {
                let session = session_from_row(&row)?;
                let event = SessionEvent::new(id, Some(SessionStatus::Pending), to, now_ms);
                insert_event(&mut tx, &event).await?;
                Transition::Applied(session)
            }
            None => match sqlx::query(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ? AND merchant_id = ? AND livemode = ?"
            ))
            .bind(id)
            .bind(merchant_id)
            .bind(livemode)
            .fetch_optional(&mut *tx)
            .await?
            {
                Some(row) => Transition::Refused(session_from_row(&row)?),
                None => Transition::NotFound,
            },
        };
        tx.commit().await?;
        if let Transition::Applied(session) = &outcome {
            self.changed(&session.id);
        }
        Ok(outcome)
    }

    async fn settle_hold(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        capture: bool,
        now_ms: i64,
    ) -> Result<Transition, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS}, hold_transfer_id FROM sessions \
             WHERE id = ? AND merchant_id = ? AND livemode = ?"
        ))
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Transition::NotFound);
        };
        let session = session_from_row(&row)?;
        let hold: Option<String> = row.try_get("hold_transfer_id")?;
        let (Some(hold), Some(CaptureStatus::Held)) = (hold, session.capture_status) else {
            return Ok(Transition::Refused(session));
        };
        // Past its deadline a hold is lapsed, whether or not the sweeper came by yet.
        let lapses_at: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT lapses_at FROM transfers WHERE id = ? AND state = 'pending'",
        )
        .bind(&hold)
        .fetch_optional(&mut *tx)
        .await?;
        if matches!(lapses_at, Some(Some(deadline)) if deadline <= now_ms) {
            ledger::lapse_in(&mut tx, &hold, now_ms).await?;
            let row = sqlx::query(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
            ))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            self.changed(id);
            return Ok(Transition::Refused(session_from_row(&row)?));
        }
        let to = if capture {
            TransferState::Posted
        } else {
            TransferState::Voided
        };
        match ledger::resolve_in(&mut tx, &hold, to, now_ms).await {
            Ok(_) => {}
            // The hold lapsed a moment ago: nothing is held any more.
            Err(StoreError::Ledger(LedgerError::NotPending)) => {
                return Ok(Transition::Refused(session))
            }
            Err(e) => return Err(e),
        }
        let (status, kind) = if capture {
            (SessionStatus::Paid, "session.captured")
        } else {
            (SessionStatus::Cancelled, "session.released")
        };
        let updated = sqlx::query(&format!(
            "UPDATE sessions SET status = ?, capture_status = ?, updated_at = ? WHERE id = ? \
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(status.as_str())
        .bind(if capture { "captured" } else { "released" })
        .bind(now_ms)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let event = SessionEvent::named(id, kind, Some(SessionStatus::Paid), status, now_ms);
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        self.changed(id);
        Ok(Transition::Applied(session_from_row(&updated)?))
    }

    async fn expire_due(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError> {
        let mut tx = self.write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET status = 'expired', updated_at = ?1 \
             WHERE seq IN (SELECT seq FROM sessions \
                           WHERE status = 'pending' AND expires_at <= ?1 LIMIT ?2) \
             RETURNING id",
        )
        .bind(now_ms)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            let event = SessionEvent::new(
                id,
                Some(SessionStatus::Pending),
                SessionStatus::Expired,
                now_ms,
            );
            insert_event(&mut tx, &event).await?;
        }
        tx.commit().await?;
        for id in &ids {
            self.changed(id);
        }
        Ok(ids.len())
    }

    async fn session_for_checkout(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRecord, String)>, StoreError> {
        let columns = SESSION_COLUMNS
            .split(", ")
            .map(|c| format!("s.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let row = sqlx::query(&format!(
            "SELECT {columns}, m.name AS merchant_name FROM sessions s \
             JOIN merchants m ON m.id = s.merchant_id WHERE s.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        match row {
            Some(row) => Ok(Some((
                session_from_row(&row)?,
                row.try_get("merchant_name")?,
            ))),
            None => Ok(None),
        }
    }

    async fn session_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, session_id, type, from_status, to_status, created_at \
             FROM session_events WHERE session_id = ? ORDER BY seq",
        )
        .bind(session_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let from: Option<String> = row.try_get("from_status")?;
                let to: String = row.try_get("to_status")?;
                Ok(SessionEvent {
                    id: row.try_get("id")?,
                    session_id: row.try_get("session_id")?,
                    kind: row.try_get("type")?,
                    from_status: from.map(|s| s.parse()).transpose().map_err(corrupt)?,
                    to_status: to.parse().map_err(corrupt)?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        stale_ms: i64,
        retain_ms: i64,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut tx = self.write().await?;
        let existing = sqlx::query(
            "SELECT fingerprint, response_status, response_body, created_at, locked_at \
             FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match existing {
            Some(row) if row.try_get::<i64, _>("created_at")? > now_ms - retain_ms => {
                let status: Option<i64> = row.try_get("response_status")?;
                if row.try_get::<String, _>("fingerprint")? != fingerprint {
                    IdempotencyClaim::Mismatch
                } else if let Some(status) = status {
                    IdempotencyClaim::Replay {
                        status: u16::try_from(status).map_err(corrupt)?,
                        body: row.try_get("response_body")?,
                    }
                } else if row.try_get::<i64, _>("locked_at")? > now_ms - stale_ms {
                    IdempotencyClaim::InProgress
                } else {
                    sqlx::query(
                        "UPDATE idempotency_keys SET locked_at = ? WHERE scope = ? AND key = ?",
                    )
                    .bind(now_ms)
                    .bind(scope)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                    IdempotencyClaim::Acquired
                }
            }
            _ => {
                sqlx::query(
                    "INSERT OR REPLACE INTO idempotency_keys \
                         (scope, key, fingerprint, response_status, response_body, created_at, locked_at) \
                     VALUES (?, ?, ?, NULL, NULL, ?, ?)",
                )
                .bind(scope)
                .bind(key)
                .bind(fingerprint)
                .bind(now_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                IdempotencyClaim::Acquired
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    async fn complete_idempotency_key(
        &self,
        done: &IdempotencyCompletion,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        complete_in(&mut tx, done).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND response_status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn purge_idempotency_keys(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
