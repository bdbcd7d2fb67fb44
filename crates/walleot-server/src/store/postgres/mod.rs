//! The PostgreSQL store: one database shared by several instances of the service.
//!
//! Every write is one transaction at READ COMMITTED on a pooled connection. What must
//! happen once whichever instance asks is guarded by the statement that writes it (an
//! `UPDATE … WHERE status = 'pending'`, an insert on a unique key): the second of two
//! racing writers waits for the first's row lock, then finds its guard false and writes
//! nothing. A transaction PostgreSQL ends to break a deadlock is run again. Budgets
//! read before a write (mandate spending, approvals without a second factor) lock the
//! row they are counted for first. Commits are durable when answered
//! (`synchronous_commit` as the server has it, `on` by default); concurrent commits
//! share the server's WAL flushes.

mod events;
mod idempotency;
mod ledger;
mod mandates;
mod merchants;
mod payers;
mod plans;
mod sessions;
mod webhooks;

use super::rows::{
    key_and_session_sql, key_from_row, session_from_row, signing_key_from_row, JOINED_KEY,
    SIGNING_KEYS,
};
use crate::domain::ports::{
    CoveredPayment, IdempotencyCompletion, KeyAndSession, PlanOutcome, Store, StoreError,
};
use crate::domain::receipts::SigningKeyRecord;
use crate::domain::sessions::{SessionEvent, SessionRecord};
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::Row;
use sqlx::{Connection, Postgres, Transaction};
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Connections of one instance's pool.
const POOL_SIZE: u32 = 16;
/// How long a request waits for a connection (or for the database to accept one)
/// before it fails with 503: a database that is down is reported, not waited for.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);
/// A pooled connection idle for longer is pinged before it is used.
const PING_IDLE_AFTER: Duration = Duration::from_secs(1);
/// How long a statement waits for another transaction's row lock before it fails
/// with 503, and how long a transaction may sit idle before the database ends it: an
/// instance that stalls holding a merchant's account row holds up the merchant's
/// payments on every instance for this long at most, not until TCP gives up.
const LOCK_TIMEOUT: &str = "5s";
const IDLE_IN_TRANSACTION_TIMEOUT: &str = "15s";
/// Runs of a transaction the database ended to break a deadlock.
const ATTEMPTS: u32 = 5;

/// A write's transaction, handed to the work and given back with its answer.
pub(super) type Tx = Transaction<'static, Postgres>;

pub struct PostgresStore {
    pool: PgPool,
    /// Ids of sessions whose status this instance changed, after commit.
    changes: tokio::sync::broadcast::Sender<String>,
}

impl PostgresStore {
    /// Connects to the database at a `postgres://` URL and brings its schema up to date
    /// (the schema of the URL's `search_path`, `public` by default).
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        let options = PgConnectOptions::from_str(url)?;
        // Instances starting together take turns: the migrator locks the database,
        // on a connection of its own that waits for the lock as long as it takes.
        MIGRATOR
            .run(&mut PgConnection::connect_with(&options).await?)
            .await?;
        let options = options.options([
            ("lock_timeout", LOCK_TIMEOUT),
            (
                "idle_in_transaction_session_timeout",
                IDLE_IN_TRANSACTION_TIMEOUT,
            ),
        ]);
        let pool = PgPoolOptions::new()
            .max_connections(POOL_SIZE)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            // A connection the database dropped (a restart) is found out before use, by
            // a ping; one in use a moment ago is taken as is, saving a round trip.
            .test_before_acquire(false)
            .before_acquire(|connection, meta| {
                Box::pin(async move {
                    if meta.idle_for > PING_IDLE_AFTER {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
            .connect_with(options)
            .await?;
        let (changes, _) = tokio::sync::broadcast::channel(4096);
        Ok(PostgresStore { pool, changes })
    }

    /// Runs `work` in a transaction and commits it; runs it again (up to [`ATTEMPTS`]
    /// times) when the database ended it to break a deadlock. `work` gets the
    /// transaction and gives it back with its answer; an error rolls it back.
    pub(super) async fn write<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: Fn(Tx) -> Fut,
        Fut: Future<Output = Result<(Tx, T), StoreError>>,
    {
        retrying(|| async {
            let tx = self.pool.begin().await?;
            let (tx, answer) = work(tx).await?;
            tx.commit().await?;
            Ok(answer)
        })
        .await
    }

    /// Tells the watchers of a session that it changed; nobody listening is fine.
    fn changed(&self, session_id: &str) {
        let _ = self.changes.send(session_id.to_string());
    }
}

/// Runs `attempt` again (up to [`ATTEMPTS`] times, after a short random pause) while
/// the database ends it to break a deadlock.
async fn retrying<T, Fut>(mut attempt: impl FnMut() -> Fut) -> Result<T, StoreError>
where
    Fut: Future<Output = Result<T, StoreError>>,
{
    let mut tries = 1;
    loop {
        match attempt().await {
            Err(StoreError::Contended(_)) if tries < ATTEMPTS => {
                let pause = rand::random::<u64>() % (10 * u64::from(tries)) + 1;
                tokio::time::sleep(Duration::from_millis(pause)).await;
                tries += 1;
            }
            done => return done,
        }
    }
}

/// A new session with its event, and the answer to its idempotency key when given, in
/// one statement (one round trip, atomic without a transaction of its own). Nothing is
/// written when an answer for the key was kept meanwhile.
async fn insert_session_alone(
    pool: &PgPool,
    session: &SessionRecord,
    created: &SessionEvent,
    completion: Option<&IdempotencyCompletion>,
) -> Result<(), StoreError> {
    let sql = match completion {
        Some(_) => &*NEW_SESSION_ANSWERED,
        None => &*NEW_SESSION,
    };
    let query = bind_session(sqlx::query(sql), session)
        .bind(&created.id)
        .bind(&created.kind)
        .bind(created.from_status.map(|s| s.as_str()))
        .bind(created.to_status.as_str())
        .bind(created.created_at);
    let query = match completion {
        Some(done) => bind_completion(query, done),
        None => query,
    };
    let written = query.execute(pool).await?.rows_affected();
    if written == 0 {
        return Err(StoreError::AnsweredMeanwhile);
    }
    Ok(())
}

/// The columns of a new session, `$1` to `$13`.
const NEW_SESSION_COLUMNS: &str = "id, merchant_id, livemode, amount, currency, description, \
     status, created_at, expires_at, updated_at, capture_method, metadata, customer";
const NEW_SESSION_VALUES: &str = "$1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13";
/// Its event, from the session inserted (`$14` to `$18`).
const NEW_SESSION_EVENT: &str =
    "INSERT INTO session_events (id, session_id, type, from_status, to_status, created_at) \
     SELECT $14, id, $15, $16, $17, $18 FROM session";

static NEW_SESSION: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH session AS (INSERT INTO sessions ({NEW_SESSION_COLUMNS}) \
                          VALUES ({NEW_SESSION_VALUES}) RETURNING id) \
         {NEW_SESSION_EVENT}"
    )
});

/// The same, the session written only if the answer (`$19` on, as in
/// [`idempotency::COMPLETE`]) is.
static NEW_SESSION_ANSWERED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH answer AS ({} RETURNING 1), \
              session AS (INSERT INTO sessions ({NEW_SESSION_COLUMNS}) \
                          SELECT {NEW_SESSION_VALUES} WHERE EXISTS (SELECT 1 FROM answer) \
                          RETURNING id) \
         {NEW_SESSION_EVENT}",
        idempotency::complete_sql(19)
    )
});

type Query<'q> = sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>;

/// Binds a new session's columns in [`NEW_SESSION_COLUMNS`]' order.
fn bind_session<'q>(query: Query<'q>, session: &'q SessionRecord) -> Query<'q> {
    query
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
}

/// Binds an answer's values in the order of [`idempotency::complete_sql`].
fn bind_completion<'q>(query: Query<'q>, done: &'q IdempotencyCompletion) -> Query<'q> {
    query
        .bind(&done.scope)
        .bind(&done.key)
        .bind(&done.fingerprint)
        .bind(i64::from(done.status))
        .bind(&done.body)
        .bind(done.created_at)
        .bind(done.forget_before)
}

/// A new session, and the payment that covers it when its precondition holds: the
/// payment is tried in a savepoint of its own, so that a stale budget or an empty wallet
/// leaves the session pending with its pending answer.
async fn new_session_in(
    mut tx: Tx,
    session: &SessionRecord,
    created: &SessionEvent,
    completion: Option<&IdempotencyCompletion>,
    covered: Option<&CoveredPayment>,
) -> Result<(Tx, Option<SessionRecord>), StoreError> {
    insert_session_in(&mut tx, session, created).await?;
    if let Some(covered) = covered {
        sqlx::query("SAVEPOINT covered").execute(&mut *tx).await?;
        let paid = match plans::apply_in(&mut tx, &covered.plan).await {
            Ok(PlanOutcome::Applied(paid)) => Some(paid),
            Ok(_) | Err(StoreError::Ledger(_)) => None,
            Err(e) => return Err(e),
        };
        if paid.is_none() {
            sqlx::query("ROLLBACK TO SAVEPOINT covered")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("RELEASE SAVEPOINT covered")
            .execute(&mut *tx)
            .await?;
        if let Some(paid) = paid {
            if let Some(done) = &covered.completion {
                idempotency::complete_in(&mut tx, done).await?;
            }
            return Ok((tx, Some(paid)));
        }
    }
    if let Some(done) = completion {
        idempotency::complete_in(&mut tx, done).await?;
    }
    Ok((tx, None))
}

async fn insert_session_in(
    db: &mut PgConnection,
    session: &SessionRecord,
    created: &SessionEvent,
) -> Result<(), StoreError> {
    let sql = format!("INSERT INTO sessions ({NEW_SESSION_COLUMNS}) VALUES ({NEW_SESSION_VALUES})");
    bind_session(sqlx::query(&sql), session)
        .execute(&mut *db)
        .await?;
    insert_event(db, created).await
}

async fn insert_event(db: &mut PgConnection, event: &SessionEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO session_events (id, session_id, type, from_status, to_status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&event.id)
    .bind(&event.session_id)
    .bind(&event.kind)
    .bind(event.from_status.map(|s| s.as_str()))
    .bind(event.to_status.as_str())
    .bind(event.created_at)
    .execute(db)
    .await?;
    Ok(())
}

/// [`key_and_session_sql`] with PostgreSQL's placeholders.
static KEY_AND_SESSION: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| key_and_session_sql("$1", "$2"));

#[async_trait]
impl Store for PostgresStore {
    /// One round trip instead of two.
    async fn key_and_session(
        &self,
        key_hash: &str,
        session_id: &str,
    ) -> Option<Result<KeyAndSession, StoreError>> {
        let read = async {
            let row = sqlx::query(&KEY_AND_SESSION)
                .bind(key_hash)
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?;
            let Some(row) = row else {
                return Ok((None, None));
            };
            let key = key_from_row(&row, &JOINED_KEY)?;
            let session = match row.try_get::<Option<String>, _>("id")? {
                Some(_) => Some(session_from_row(&row)?),
                None => None,
            };
            Ok((Some(key), session))
        };
        Some(read.await)
    }

    async fn outbox_horizon(&self) -> Result<Option<(i64, i64)>, StoreError> {
        let (oldest, next): (i64, i64) = sqlx::query_as(
            "SELECT pg_snapshot_xmin(s)::text::bigint, pg_snapshot_xmax(s)::text::bigint \
             FROM pg_current_snapshot() AS s",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(Some((oldest, next)))
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError> {
        // The first instance's secret stands; the others read it.
        sqlx::query("INSERT INTO settings (name, value) VALUES ($1, $2) ON CONFLICT DO NOTHING")
            .bind(name)
            .bind(fresh)
            .execute(&self.pool)
            .await?;
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?,
        )
    }

    async fn insert_signing_key(&self, key: &SigningKeyRecord) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO signing_keys (kid, seed, created_at) VALUES ($1, $2, $3)")
            .bind(&key.kid)
            .bind(key.seed.to_vec())
            .bind(key.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query(SIGNING_KEYS)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(signing_key_from_row)
            .collect()
    }
}
