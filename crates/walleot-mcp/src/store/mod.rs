//! Pending payments: what a payment was created for, and whether its tool ran.
//!
//! A payment is bound to the tool, its price, a canonical hash of the arguments and,
//! where the server names one, the authenticated subject; its state moves
//! `AwaitingPayment` → `Running` → `Ran` → `Done` once, so the tool runs at most once
//! per payment. `Ran` holds a result whose payment is not settled yet: it is handed out
//! only once the held funds are captured. `Done` keeps the result to be returned again.
//!
//! Nothing is kept for ever: an unpaid payment is dropped a while after its session
//! expires (a payer may have paid just before), a kept result a while after it was
//! made, and the memory store also keeps within a byte budget.

mod redis;

pub use self::redis::RedisStore;

use crate::price::Price;
use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPayment {
    /// The secret handed to the MCP client (at least 128 random bits): whoever holds it
    /// may confirm, subject to `subject`. It never appears in the checkout link.
    pub payment_id: String,
    /// The Walleot session that collects the money.
    pub session_id: String,
    pub payment_url: String,
    pub tool: String,
    /// The arguments to run the tool with once paid.
    pub arguments: Map<String, Value>,
    pub arguments_hash: String,
    /// The price it was opened at.
    pub price: Price,
    /// The authenticated subject the payment is bound to, where the server names one.
    pub subject: Option<String>,
    /// Who opened it, for the per-caller cap and the confirm tools shown: the subject,
    /// the MCP session, the stdio connection or the client's address.
    pub owner: String,
    /// When the session expires unpaid: RFC 3339 as the service gave it, and Unix
    /// seconds by this process's clock.
    pub expires_at: String,
    pub expires_unix: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentState {
    AwaitingPayment,
    Running,
    /// The tool ran; the held funds are not captured (or released) yet, so a
    /// successful result is not handed out.
    Ran {
        result: Value,
        succeeded: bool,
    },
    /// Settled; the result (a serialized `CallToolResult`) is kept for repeated
    /// confirmations.
    Done {
        result: Value,
        succeeded: bool,
    },
}

/// The outcome of claiming a paid payment to run its tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// This caller runs the tool.
    Run,
    /// Another confirmation is running it now.
    Running,
    /// It ran, but its payment is not settled: settle it, then hand out the result.
    Settle {
        result: Value,
        succeeded: bool,
    },
    /// It ran and was settled: here is the result.
    Done {
        result: Value,
        succeeded: bool,
    },
    Unknown,
}

/// Unpaid payments whose sessions have not expired: the caller's and everyone's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OpenCounts {
    pub owner: usize,
    pub total: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store keeps no more: the payment was not kept.
    #[error("payment store is full")]
    Full,
    #[error("payment store: {0}")]
    Failed(String),
}

/// How long payments and results are kept.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// How long an unpaid payment is kept after its session expired: a payer who paid
    /// just before expiry can still confirm until the held funds lapse back.
    pub after_expiry: Duration,
    /// How long a result is kept after its tool ran.
    pub results: Duration,
}

impl Default for Retention {
    /// A day each: the service's default hold window.
    fn default() -> Self {
        Retention {
            after_expiry: Duration::from_secs(24 * 3600),
            results: Duration::from_secs(24 * 3600),
        }
    }
}

/// Where pending payments live: in memory by default; a SQLite file lets them survive a
/// restart of the MCP server and be shared by its processes on one machine; Redis, by
/// several instances behind a load balancer.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    /// Keeps a new payment, dropping what its retention no longer keeps.
    async fn put(&self, payment: PendingPayment) -> Result<(), StoreError>;
    async fn get(
        &self,
        payment_id: &str,
    ) -> Result<Option<(PendingPayment, PaymentState)>, StoreError>;
    /// Unpaid payments whose sessions are open at `now` (Unix seconds).
    async fn open_counts(&self, owner: &str, now: i64) -> Result<OpenCounts, StoreError>;
    /// `AwaitingPayment` → `Running`, atomically.
    async fn claim(&self, payment_id: &str) -> Result<Claim, StoreError>;
    /// `Running` → `Ran`: the tool ran, its payment is not settled yet.
    async fn ran(&self, payment_id: &str, result: Value, succeeded: bool)
        -> Result<(), StoreError>;
    /// `Ran` → `Done`: settled.
    async fn finish(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError>;
}

/// Unix seconds by this process's clock.
pub(crate) fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

struct Entry {
    payment: PendingPayment,
    state: PaymentState,
    /// When the tool ran, for the retention of its result.
    ran_at: i64,
    /// Bytes counted against the budget.
    weight: usize,
}

impl Entry {
    fn weigh(&mut self) {
        let arguments = serde_json::to_string(&self.payment.arguments).map_or(0, |s| s.len());
        let result = match &self.state {
            PaymentState::Ran { result, .. } | PaymentState::Done { result, .. } => {
                result.to_string().len()
            }
            _ => 0,
        };
        self.weight = arguments + result + 512;
    }

    /// Whether the retention keeps it at `now`.
    fn kept(&self, now: i64, retention: &Retention) -> bool {
        match self.state {
            PaymentState::AwaitingPayment => {
                now < self.payment.expires_unix + retention.after_expiry.as_secs() as i64
            }
            PaymentState::Done { .. } => now < self.ran_at + retention.results.as_secs() as i64,
            // A run in flight, or a paid result still to settle: never dropped.
            PaymentState::Running | PaymentState::Ran { .. } => true,
        }
    }
}

#[derive(Default)]
struct Kept {
    entries: HashMap<String, Entry>,
    bytes: usize,
}

impl Kept {
    fn remove(&mut self, payment_id: &str) {
        if let Some(entry) = self.entries.remove(payment_id) {
            self.bytes -= entry.weight;
        }
    }

    fn set_state(&mut self, payment_id: &str, state: PaymentState, now: i64) {
        if let Some(entry) = self.entries.get_mut(payment_id) {
            self.bytes -= entry.weight;
            entry.state = state;
            entry.ran_at = now;
            entry.weigh();
            self.bytes += entry.weight;
        }
    }

    /// Drops what the retention no longer keeps, then, while over `budget`, the entries
    /// least likely to be asked for again: expired unpaid payments, then kept results,
    /// oldest first.
    fn make_room(&mut self, now: i64, retention: &Retention, budget: usize) {
        let stale: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| !e.kept(now, retention))
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            self.remove(&id);
        }
        if self.bytes <= budget {
            return;
        }
        let mut evictable: Vec<(u8, i64, String)> = self
            .entries
            .iter()
            .filter_map(|(id, e)| match e.state {
                PaymentState::AwaitingPayment if e.payment.expires_unix <= now => {
                    Some((0, e.payment.expires_unix, id.clone()))
                }
                PaymentState::Done { .. } => Some((1, e.ran_at, id.clone())),
                _ => None,
            })
            .collect();
        evictable.sort();
        for (_, _, id) in evictable {
            if self.bytes <= budget {
                break;
            }
            self.remove(&id);
        }
    }
}

/// Payments in this process's memory, within a byte budget (arguments and results
/// counted): an abandoned call cannot make the server grow without bound.
pub struct MemoryStore {
    kept: Mutex<Kept>,
    retention: Retention,
    budget: usize,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// 64 MiB of arguments and results; the default retention.
    pub fn new() -> Self {
        Self::with_limits(64 << 20, Retention::default())
    }

    pub fn with_limits(budget_bytes: usize, retention: Retention) -> Self {
        MemoryStore {
            kept: Mutex::new(Kept::default()),
            retention,
            budget: budget_bytes,
        }
    }

    fn kept(&self) -> std::sync::MutexGuard<'_, Kept> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn put(&self, payment: PendingPayment) -> Result<(), StoreError> {
        let now = now_unix();
        let mut entry = Entry {
            payment,
            state: PaymentState::AwaitingPayment,
            ran_at: now,
            weight: 0,
        };
        entry.weigh();
        let mut kept = self.kept();
        kept.make_room(
            now,
            &self.retention,
            self.budget.saturating_sub(entry.weight),
        );
        if kept.bytes + entry.weight > self.budget {
            return Err(StoreError::Full);
        }
        kept.bytes += entry.weight;
        kept.entries.insert(entry.payment.payment_id.clone(), entry);
        Ok(())
    }

    async fn get(
        &self,
        payment_id: &str,
    ) -> Result<Option<(PendingPayment, PaymentState)>, StoreError> {
        let now = now_unix();
        Ok(self
            .kept()
            .entries
            .get(payment_id)
            .filter(|e| e.kept(now, &self.retention))
            .map(|e| (e.payment.clone(), e.state.clone())))
    }

    async fn open_counts(&self, owner: &str, now: i64) -> Result<OpenCounts, StoreError> {
        let kept = self.kept();
        let mut counts = OpenCounts::default();
        for entry in kept.entries.values() {
            if entry.state == PaymentState::AwaitingPayment && entry.payment.expires_unix > now {
                counts.total += 1;
                if entry.payment.owner == owner {
                    counts.owner += 1;
                }
            }
        }
        Ok(counts)
    }

    async fn claim(&self, payment_id: &str) -> Result<Claim, StoreError> {
        let mut kept = self.kept();
        let Some(entry) = kept.entries.get_mut(payment_id) else {
            return Ok(Claim::Unknown);
        };
        Ok(match &entry.state {
            PaymentState::AwaitingPayment => {
                entry.state = PaymentState::Running;
                Claim::Run
            }
            PaymentState::Running => Claim::Running,
            PaymentState::Ran { result, succeeded } => Claim::Settle {
                result: result.clone(),
                succeeded: *succeeded,
            },
            PaymentState::Done { result, succeeded } => Claim::Done {
                result: result.clone(),
                succeeded: *succeeded,
            },
        })
    }

    async fn ran(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        self.kept().set_state(
            payment_id,
            PaymentState::Ran { result, succeeded },
            now_unix(),
        );
        Ok(())
    }

    async fn finish(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        self.kept().set_state(
            payment_id,
            PaymentState::Done { result, succeeded },
            now_unix(),
        );
        Ok(())
    }
}

/// Pending payments in a SQLite file: they survive a restart of the MCP server, and
/// several server processes on one machine can share the file. Claims are atomic
/// updates, so a tool still runs at most once per payment across processes.
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
    retention: Retention,
}

impl SqliteStore {
    /// Opens (creating if needed) the file at `path`, with the default retention.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(fail)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS walleot_mcp_payments (
                payment_id   TEXT PRIMARY KEY,
                owner        TEXT NOT NULL,
                payment      TEXT NOT NULL,
                expires_unix INTEGER NOT NULL,
                state        TEXT NOT NULL CHECK (state IN ('awaiting', 'running', 'ran', 'done')),
                result       TEXT,
                succeeded    INTEGER,
                ran_at       INTEGER
            )",
        )
        .execute(&pool)
        .await
        .map_err(fail)?;
        sqlx::query(
            "CREATE INDEX IF NOT EXISTS walleot_mcp_payments_open
             ON walleot_mcp_payments (state, expires_unix, owner)",
        )
        .execute(&pool)
        .await
        .map_err(fail)?;
        Ok(SqliteStore {
            pool,
            retention: Retention::default(),
        })
    }

    pub fn retention(mut self, retention: Retention) -> Self {
        self.retention = retention;
        self
    }
}

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError::Failed(e.to_string())
}

fn state_of(
    state: &str,
    result: Option<String>,
    succeeded: Option<bool>,
) -> Result<PaymentState, StoreError> {
    let kept = |result: Option<String>| -> Result<Value, StoreError> {
        serde_json::from_str(result.as_deref().unwrap_or("null")).map_err(fail)
    };
    let succeeded = succeeded.unwrap_or(false);
    Ok(match state {
        "awaiting" => PaymentState::AwaitingPayment,
        "running" => PaymentState::Running,
        "ran" => PaymentState::Ran {
            result: kept(result)?,
            succeeded,
        },
        "done" => PaymentState::Done {
            result: kept(result)?,
            succeeded,
        },
        other => return Err(fail(format!("unknown payment state `{other}`"))),
    })
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn put(&self, payment: PendingPayment) -> Result<(), StoreError> {
        let now = now_unix();
        sqlx::query(
            "DELETE FROM walleot_mcp_payments
             WHERE (state = 'awaiting' AND expires_unix + ? <= ?) OR (state = 'done' AND ran_at + ? <= ?)",
        )
        .bind(self.retention.after_expiry.as_secs() as i64)
        .bind(now)
        .bind(self.retention.results.as_secs() as i64)
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(fail)?;
        let text = serde_json::to_string(&payment).map_err(fail)?;
        sqlx::query(
            "INSERT INTO walleot_mcp_payments (payment_id, owner, payment, expires_unix, state)
             VALUES (?, ?, ?, ?, 'awaiting')",
        )
        .bind(&payment.payment_id)
        .bind(&payment.owner)
        .bind(text)
        .bind(payment.expires_unix)
        .execute(&self.pool)
        .await
        .map_err(fail)?;
        Ok(())
    }

    async fn get(
        &self,
        payment_id: &str,
    ) -> Result<Option<(PendingPayment, PaymentState)>, StoreError> {
        let row: Option<(String, String, Option<String>, Option<bool>)> = sqlx::query_as(
            "SELECT payment, state, result, succeeded FROM walleot_mcp_payments WHERE payment_id = ?",
        )
        .bind(payment_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(fail)?;
        row.map(|(payment, state, result, succeeded)| {
            Ok((
                serde_json::from_str(&payment).map_err(fail)?,
                state_of(&state, result, succeeded)?,
            ))
        })
        .transpose()
    }

    async fn open_counts(&self, owner: &str, now: i64) -> Result<OpenCounts, StoreError> {
        let (total, mine): (i64, i64) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(owner = ?), 0) FROM walleot_mcp_payments
             WHERE state = 'awaiting' AND expires_unix > ?",
        )
        .bind(owner)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(fail)?;
        Ok(OpenCounts {
            owner: mine as usize,
            total: total as usize,
        })
    }

    async fn claim(&self, payment_id: &str) -> Result<Claim, StoreError> {
        let claimed = sqlx::query(
            "UPDATE walleot_mcp_payments SET state = 'running' WHERE payment_id = ? AND state = 'awaiting'",
        )
        .bind(payment_id)
        .execute(&self.pool)
        .await
        .map_err(fail)?;
        if claimed.rows_affected() == 1 {
            return Ok(Claim::Run);
        }
        Ok(match self.get(payment_id).await? {
            None => Claim::Unknown,
            Some((_, PaymentState::Ran { result, succeeded })) => {
                Claim::Settle { result, succeeded }
            }
            Some((_, PaymentState::Done { result, succeeded })) => {
                Claim::Done { result, succeeded }
            }
            Some(_) => Claim::Running,
        })
    }

    async fn ran(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        self.set_result(payment_id, "ran", result, succeeded).await
    }

    async fn finish(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        self.set_result(payment_id, "done", result, succeeded).await
    }
}

impl SqliteStore {
    async fn set_result(
        &self,
        payment_id: &str,
        state: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE walleot_mcp_payments SET state = ?, result = ?, succeeded = ?, ran_at = ?
             WHERE payment_id = ?",
        )
        .bind(state)
        .bind(result.to_string())
        .bind(succeeded)
        .bind(now_unix())
        .bind(payment_id)
        .execute(&self.pool)
        .await
        .map_err(fail)?;
        Ok(())
    }
}

/// SHA-256 of the arguments as canonical JSON (object keys sorted at every depth), so
/// that the same arguments always give the same hash whatever their order.
pub fn arguments_hash(arguments: &Map<String, Value>) -> String {
    fn canonical(value: &Value) -> Value {
        match value {
            Value::Object(map) => {
                let mut keys: Vec<_> = map.keys().collect();
                keys.sort();
                let mut sorted = Map::new();
                for key in keys {
                    sorted.insert(key.clone(), canonical(&map[key]));
                }
                Value::Object(sorted)
            }
            Value::Array(items) => Value::Array(items.iter().map(canonical).collect()),
            other => other.clone(),
        }
    }
    let text =
        serde_json::to_string(&canonical(&Value::Object(arguments.clone()))).unwrap_or_default();
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn the_hash_ignores_key_order_but_not_values() {
        let a = arguments_hash(&object(json!({"a": 1, "b": {"x": 1, "y": [1, 2]}})));
        let b = arguments_hash(&object(json!({"b": {"y": [1, 2], "x": 1}, "a": 1})));
        let c = arguments_hash(&object(json!({"a": 2, "b": {"x": 1, "y": [1, 2]}})));
        let d = arguments_hash(&object(json!({"a": 1, "b": {"x": 1, "y": [2, 1]}})));
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }

    fn sample(id: &str, owner: &str, expires_unix: i64) -> PendingPayment {
        PendingPayment {
            payment_id: id.into(),
            session_id: format!("sess_{id}"),
            payment_url: "u".into(),
            tool: "t".into(),
            arguments: object(json!({"a": 1})),
            arguments_hash: "h".into(),
            price: Price::parse("0.01", "USD").unwrap(),
            subject: None,
            owner: owner.into(),
            expires_at: "2030-01-01T00:00:00Z".into(),
            expires_unix,
        }
    }

    async fn claims_once(store: &dyn PaymentStore) {
        let later = now_unix() + 600;
        store.put(sample("p", "c", later)).await.unwrap();
        assert_eq!(
            store.get("p").await.unwrap(),
            Some((sample("p", "c", later), PaymentState::AwaitingPayment))
        );
        assert_eq!(store.claim("p").await.unwrap(), Claim::Run);
        assert_eq!(store.claim("p").await.unwrap(), Claim::Running);
        store.ran("p", json!({"ok": 1}), true).await.unwrap();
        assert_eq!(
            store.claim("p").await.unwrap(),
            Claim::Settle {
                result: json!({"ok": 1}),
                succeeded: true
            }
        );
        store.finish("p", json!({"ok": 1}), true).await.unwrap();
        assert_eq!(
            store.claim("p").await.unwrap(),
            Claim::Done {
                result: json!({"ok": 1}),
                succeeded: true
            }
        );
        assert_eq!(store.claim("q").await.unwrap(), Claim::Unknown);
    }

    async fn counts_open_payments_by_owner(store: &dyn PaymentStore) {
        let now = now_unix();
        store.put(sample("a1", "alice", now + 600)).await.unwrap();
        store.put(sample("a2", "alice", now + 600)).await.unwrap();
        store.put(sample("b1", "bob", now + 600)).await.unwrap();
        // Expired unpaid payments no longer count as open.
        store.put(sample("a3", "alice", now - 1)).await.unwrap();
        assert_eq!(
            store.open_counts("alice", now).await.unwrap(),
            OpenCounts { owner: 2, total: 3 }
        );
        // A claimed payment is no longer unpaid.
        store.claim("a1").await.unwrap();
        assert_eq!(
            store.open_counts("alice", now).await.unwrap(),
            OpenCounts { owner: 1, total: 2 }
        );
    }

    fn temp_file() -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("walleot-mcp-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("payments.db")
    }

    #[tokio::test]
    async fn a_sqlite_payment_is_claimed_once_and_survives_reopening() {
        let path = temp_file();
        claims_once(&SqliteStore::open(&path).await.unwrap()).await;
        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            reopened.claim("p").await.unwrap(),
            Claim::Done {
                result: json!({"ok": 1}),
                succeeded: true
            }
        );
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    /// The local Redis (started by `.ci/run`), under a prefix of this test's own.
    async fn redis() -> RedisStore {
        let prefix = format!("walleot-test:{}:", uuid::Uuid::new_v4());
        RedisStore::open_with_prefix("redis://127.0.0.1:6379", &prefix)
            .await
            .expect("the local Redis at 127.0.0.1:6379")
    }

    #[tokio::test]
    async fn a_redis_payment_is_claimed_once_and_is_seen_by_another_connection() {
        let store = redis().await;
        claims_once(&store).await;
        let other = RedisStore::open_with_prefix("redis://127.0.0.1:6379", &store.prefix)
            .await
            .unwrap();
        assert_eq!(
            other.claim("p").await.unwrap(),
            Claim::Done {
                result: json!({"ok": 1}),
                succeeded: true
            }
        );
        counts_open_payments_by_owner(&redis().await).await;
    }

    /// Instances racing to confirm one payment: exactly one runs its tool.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn racing_redis_claims_run_the_tool_once() {
        let store = std::sync::Arc::new(redis().await);
        store.put(sample("p", "c", now_unix() + 600)).await.unwrap();
        let claims: Vec<_> = (0..16)
            .map(|_| {
                let store = store.clone();
                tokio::spawn(async move { store.claim("p").await.unwrap() })
            })
            .collect();
        let mut runs = 0;
        for claim in claims {
            match claim.await.unwrap() {
                Claim::Run => runs += 1,
                other => assert_eq!(other, Claim::Running),
            }
        }
        assert_eq!(runs, 1);
    }

    #[tokio::test]
    async fn a_redis_store_drops_what_its_retention_no_longer_keeps() {
        let retention = Retention {
            after_expiry: Duration::from_secs(60),
            results: Duration::from_secs(3600),
        };
        let store = redis().await.retention(retention);
        let now = now_unix();
        store.put(sample("old", "c", now - 61)).await.unwrap();
        store.put(sample("recent", "c", now - 30)).await.unwrap();
        assert!(store.get("old").await.unwrap().is_none());
        assert!(store.get("recent").await.unwrap().is_some());
        // Being run, a payment is never dropped; settled, its result is kept an hour.
        let mut redis = store.redis.clone();
        let ttl = |key: &'static str| {
            let key = store.payment_key(key);
            let mut redis = redis.clone();
            async move {
                ::redis::AsyncCommands::ttl::<_, i64>(&mut redis, key)
                    .await
                    .unwrap()
            }
        };
        assert!((1..=30).contains(&ttl("recent").await));
        assert_eq!(store.claim("recent").await.unwrap(), Claim::Run);
        assert_eq!(ttl("recent").await, -1);
        store.ran("recent", json!(1), true).await.unwrap();
        assert_eq!(ttl("recent").await, -1);
        store.finish("recent", json!(1), true).await.unwrap();
        assert!((3590..=3600).contains(&ttl("recent").await));
        // A result for a payment no longer kept does not bring it back.
        store.finish("old", json!(1), true).await.unwrap();
        assert!(store.get("old").await.unwrap().is_none());
        let _: () = ::redis::AsyncCommands::del(&mut redis, store.payment_key("recent"))
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_memory_payment_is_claimed_once() {
        claims_once(&MemoryStore::new()).await;
    }

    #[tokio::test]
    async fn both_stores_count_open_payments_by_owner() {
        counts_open_payments_by_owner(&MemoryStore::new()).await;
        let path = temp_file();
        counts_open_payments_by_owner(&SqliteStore::open(&path).await.unwrap()).await;
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn payments_past_their_retention_are_dropped() {
        let retention = Retention {
            after_expiry: Duration::from_secs(60),
            results: Duration::from_secs(3600),
        };
        let now = now_unix();
        let memory = MemoryStore::with_limits(1 << 20, retention);
        let path = temp_file();
        let sqlite = SqliteStore::open(&path).await.unwrap().retention(retention);
        for store in [&memory as &dyn PaymentStore, &sqlite] {
            store.put(sample("old", "c", now - 61)).await.unwrap();
            store.put(sample("recent", "c", now - 30)).await.unwrap();
            // The next put drops what the retention no longer keeps.
            store.put(sample("new", "c", now + 600)).await.unwrap();
            assert!(store.get("old").await.unwrap().is_none());
            assert!(store.get("recent").await.unwrap().is_some());
        }
        std::fs::remove_dir_all(path.parent().unwrap()).unwrap();
    }

    #[tokio::test]
    async fn the_memory_store_keeps_within_its_budget() {
        let now = now_unix();
        let big = |id: &str, expires_unix| {
            let mut p = sample(id, "c", expires_unix);
            p.arguments = object(json!({"data": "x".repeat(10_000)}));
            p
        };
        let store = MemoryStore::with_limits(35_000, Retention::default());
        store.put(big("expired", now - 1)).await.unwrap();
        store.put(big("open1", now + 600)).await.unwrap();
        store.put(big("open2", now + 600)).await.unwrap();
        // Full: the expired unpaid payment makes room first.
        store.put(big("open3", now + 600)).await.unwrap();
        assert!(store.get("expired").await.unwrap().is_none());
        // Only open payments left: nothing more is kept.
        assert!(matches!(
            store.put(big("open4", now + 600)).await,
            Err(StoreError::Full)
        ));
        assert!(store.get("open1").await.unwrap().is_some());
        assert!(store.kept().bytes <= 35_000);
    }
}
