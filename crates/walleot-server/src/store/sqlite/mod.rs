//! The SQLite store: one file, zero set-up.
//!
//! Writes go through a pool of a single connection and start with `BEGIN IMMEDIATE`,
//! so that writers queue for the lock instead of failing with "database is locked";
//! reads use a separate pool and, thanks to WAL, never wait for a writer. Commits use
//! `synchronous = FULL`: an answer is sent only once its change is on disk.

mod columns;
mod idempotency;
mod ledger;
mod mandates;
mod merchants;
mod payers;
mod plans;
mod point_reads;
mod sessions;

use crate::domain::payments::Plan;
use crate::domain::ports::{
    ApiKeyRecord, CoveredPayment, IdempotencyCompletion, Merchant, PlanOutcome, Store, StoreError,
};
use crate::domain::sessions::{SessionEvent, SessionRecord};
use crate::domain::Livemode;
use async_trait::async_trait;
use columns::Columns;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};
use std::str::FromStr;
use std::time::Duration;
use walleot_api::SessionStatus;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

const SESSION_COLUMNS: &str = "id, merchant_id, livemode, amount, currency, description, \
                               status, created_at, expires_at, updated_at, capture_method, capture_status, \
                               metadata, customer, mandate_id, mandate_period";

/// A column list with every column named through a table alias (`s.id, s.status, …`),
/// for joins; made once.
fn aliased(columns: &str, alias: &str) -> String {
    columns
        .split(',')
        .map(|c| format!("{alias}.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// [`SESSION_COLUMNS`] through the alias `s`.
static SESSION_COLUMNS_S: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| aliased(SESSION_COLUMNS, "s"));
/// The transfer columns through the alias `t`.
static TRANSFER_COLUMNS_T: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| aliased(ledger::TRANSFER_COLUMNS, "t"));

pub struct SqliteStore {
    writer: SqlitePool,
    reader: SqlitePool,
    /// New sessions and plans (payments, captures, …) go to the group committer (see
    /// [`group_commit`]).
    jobs: tokio::sync::mpsc::Sender<WriteJob>,
    /// Ids of sessions whose status changed, after commit (see `session_changes`).
    changes: tokio::sync::broadcast::Sender<String>,
    /// Reads of the status check on the calling thread; none for a database in memory.
    point_reads: Option<point_reads::PointReads>,
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
        covered: Option<Box<CoveredPayment>>,
        done: Reply<Option<SessionRecord>>,
    },
    /// A plan of the domain: a payment, or another change of a session.
    Plan {
        plan: Plan,
        /// Kept with the change if the plan is applied.
        answer: Option<Box<IdempotencyCompletion>>,
        done: Reply<PlanOutcome<SessionRecord>>,
    },
    /// The kept answer of a request whose change (if any) is written already.
    Answer {
        done: IdempotencyCompletion,
        reply: Reply<()>,
    },
}

/// What one job of a group came to, kept until the group's commit.
enum Outcome {
    NewSession(
        Result<Option<SessionRecord>, StoreError>,
        Reply<Option<SessionRecord>>,
    ),
    Answer(Result<(), StoreError>, Reply<()>),
    Plan(
        Result<PlanOutcome<SessionRecord>, StoreError>,
        Reply<PlanOutcome<SessionRecord>>,
    ),
}

impl Outcome {
    /// Answers the request: its own result once committed, else the commit's failure.
    fn answer(self, commit: &Result<(), String>) {
        let failed = |e: &String| StoreError::WriteFailed(e.clone());
        match (self, commit) {
            (Outcome::NewSession(r, done), Ok(())) => drop(done.send(r)),
            (Outcome::NewSession(_, done), Err(e)) => drop(done.send(Err(failed(e)))),
            (Outcome::Plan(r, done), Ok(())) => drop(done.send(r)),
            (Outcome::Plan(_, done), Err(e)) => drop(done.send(Err(failed(e)))),
            (Outcome::Answer(r, done), Ok(())) => drop(done.send(r)),
            (Outcome::Answer(_, done), Err(e)) => drop(done.send(Err(failed(e)))),
        }
    }
}

/// Most sessions committed by one transaction.
const GROUP_MAX: usize = 256;

/// Group commit of the hot writes (new sessions, plans): whatever jobs are waiting
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
                        covered,
                        done,
                    } => {
                        let r = new_session_in(
                            &mut tx,
                            &session,
                            &created,
                            completion.as_ref(),
                            covered.as_deref(),
                        )
                        .await;
                        (r.is_err(), Outcome::NewSession(r, done))
                    }
                    WriteJob::Plan { plan, answer, done } => {
                        let r = match (plans::apply_in(&mut tx, &plan).await, answer) {
                            (Ok(PlanOutcome::Applied(changed)), Some(answer)) => {
                                idempotency::complete_in(&mut tx, &answer)
                                    .await
                                    .map(|()| PlanOutcome::Applied(changed))
                            }
                            (r, _) => r,
                        };
                        (r.is_err(), Outcome::Plan(r, done))
                    }
                    WriteJob::Answer { done, reply } => {
                        let r = idempotency::complete_in(&mut tx, &done).await;
                        (r.is_err(), Outcome::Answer(r, reply))
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
                match outcome {
                    Outcome::Plan(Ok(PlanOutcome::Applied(changed)), _)
                    | Outcome::NewSession(Ok(Some(changed)), _) => {
                        let _ = changes.send(changed.id.clone());
                    }
                    _ => {}
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
                WriteJob::Plan { done, .. } => drop(done.send(Err(StoreError::WriteFailed(e)))),
                WriteJob::Answer { reply, .. } => drop(reply.send(Err(StoreError::WriteFailed(e)))),
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

/// A new session, and the payment that covers it when its precondition holds: the
/// payment is tried in a savepoint of its own, so that a stale budget or an empty wallet
/// leaves the session pending with its pending answer.
async fn new_session_in(
    tx: &mut Transaction<'static, Sqlite>,
    session: &SessionRecord,
    created: &SessionEvent,
    completion: Option<&IdempotencyCompletion>,
    covered: Option<&CoveredPayment>,
) -> Result<Option<SessionRecord>, StoreError> {
    insert_session_in(tx, session, created).await?;
    if let Some(covered) = covered {
        sqlx::query("SAVEPOINT covered").execute(&mut **tx).await?;
        let paid = match plans::apply_in(tx, &covered.plan).await {
            Ok(PlanOutcome::Applied(paid)) => Some(paid),
            Ok(_) | Err(StoreError::Ledger(_)) => None,
            Err(e) => return Err(e),
        };
        if paid.is_none() {
            sqlx::query("ROLLBACK TO covered")
                .execute(&mut **tx)
                .await?;
        }
        sqlx::query("RELEASE covered").execute(&mut **tx).await?;
        if let Some(paid) = paid {
            if let Some(done) = &covered.completion {
                idempotency::complete_in(tx, done).await?;
            }
            return Ok(Some(paid));
        }
    }
    if let Some(done) = completion {
        idempotency::complete_in(tx, done).await?;
    }
    Ok(None)
}

async fn insert_session_in(
    tx: &mut Transaction<'static, Sqlite>,
    session: &SessionRecord,
    created: &SessionEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO sessions (id, merchant_id, livemode, amount, currency, description, \
                               status, created_at, expires_at, updated_at, capture_method, metadata, \
                               customer) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
    .bind(
        (!session.metadata.is_empty())
            .then(|| serde_json::to_string(&session.metadata).expect("string maps serialize")),
    )
    .bind(&session.customer)
    .execute(&mut **tx)
    .await?;
    insert_event(tx, created).await?;
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
            .connect_with(options.clone().read_only(true))
            .await?;
        // A database in memory lives in its pool's connections alone.
        let path = options.get_filename();
        let in_memory = url.contains(":memory:")
            || url.contains("mode=memory")
            || path.to_string_lossy().starts_with("file:sqlx-in-memory");
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
        let (jobs, queue) = tokio::sync::mpsc::channel(GROUP_MAX * 4);
        let (changes, _) = tokio::sync::broadcast::channel(CHANGES_BUFFER);
        tokio::spawn(group_commit(writer.clone(), queue, changes.clone()));
        Ok(SqliteStore {
            writer,
            reader,
            jobs,
            changes,
            point_reads,
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

/// A stored name of an enum; one the code does not know is corrupt data, never
/// silently read as some default.
fn parse_stored<T: std::str::FromStr>(raw: &str, what: &str) -> Result<T, StoreError> {
    raw.parse()
        .map_err(|_| corrupt(format!("unknown {what} `{raw}`")))
}

fn session_from_row(row: &impl Columns) -> Result<SessionRecord, StoreError> {
    Ok(SessionRecord {
        id: row.text("id")?,
        merchant_id: row.text("merchant_id")?,
        livemode: row.flag("livemode")?,
        amount: row.int("amount")?,
        currency: row.text("currency")?.parse().map_err(corrupt)?,
        description: row.text_or_null("description")?,
        status: row.text("status")?.parse().map_err(corrupt)?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        updated_at: row.int("updated_at")?,
        capture_method: parse_stored(&row.text("capture_method")?, "capture method")?,
        capture_status: row
            .text_or_null("capture_status")?
            .map(|s| parse_stored(&s, "capture status"))
            .transpose()?,
        metadata: match row.text_or_null("metadata")? {
            Some(text) => serde_json::from_str(&text)
                .map_err(|e| corrupt(format!("session metadata: {e}")))?,
            None => Default::default(),
        },
        customer: row.text_or_null("customer")?,
        mandate_id: row.text_or_null("mandate_id")?,
        mandate_period: row.int_or_null("mandate_period")?,
    })
}

/// The names a query gives the key columns that sessions also have.
struct KeyColumns {
    id: &'static str,
    merchant_id: &'static str,
    livemode: &'static str,
    created_at: &'static str,
}

/// A key read on its own, its columns under their names.
const KEY: KeyColumns = KeyColumns {
    id: "id",
    merchant_id: "merchant_id",
    livemode: "livemode",
    created_at: "created_at",
};

fn key_from_row(row: &impl Columns, names: &KeyColumns) -> Result<ApiKeyRecord, StoreError> {
    Ok(ApiKeyRecord {
        id: row.text(names.id)?,
        merchant_id: row.text(names.merchant_id)?,
        merchant_name: row.text("merchant_name")?,
        mode: Livemode::from_flag(row.flag(names.livemode)?),
        hash: row.text("hash")?,
        prefix: row.text("prefix")?,
        created_at: row.int(names.created_at)?,
        revoked_at: row.int_or_null("revoked_at")?,
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

#[async_trait]
impl Store for SqliteStore {
    fn key_and_session_now(
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
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        StoreError::Database(format!("migration failed: {e}"))
    }
}
