//! Pending payments: what a payment was created for, and whether its tool ran.
//!
//! A payment is bound to the tool, its price, a canonical hash of the arguments and the
//! caller; its state moves `AwaitingPayment` → `Running` → `Done` once, so the tool
//! runs at most once per payment, and a result that could not be delivered is kept to
//! be returned on the next confirmation.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingPayment {
    /// The Walleot session id.
    pub payment_id: String,
    pub payment_url: String,
    pub tool: String,
    /// The arguments to run the tool with once paid.
    pub arguments: Map<String, Value>,
    pub arguments_hash: String,
    pub amount_minor: i64,
    pub currency: String,
    /// Who asked: the authenticated subject, else the MCP session.
    pub caller: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentState {
    AwaitingPayment,
    Running,
    /// The tool ran; its result (a serialized `CallToolResult`) is kept.
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
    /// It ran already: here is the result.
    Done {
        result: Value,
        succeeded: bool,
    },
    Unknown,
}

#[derive(Debug, thiserror::Error)]
#[error("payment store: {0}")]
pub struct StoreError(pub String);

/// Where pending payments live: in memory by default; a persistent store lets them
/// survive a restart of the MCP server and be shared by several instances.
#[async_trait]
pub trait PaymentStore: Send + Sync + 'static {
    async fn put(&self, payment: PendingPayment) -> Result<(), StoreError>;
    async fn get(
        &self,
        payment_id: &str,
    ) -> Result<Option<(PendingPayment, PaymentState)>, StoreError>;
    /// `AwaitingPayment` → `Running`, atomically.
    async fn claim(&self, payment_id: &str) -> Result<Claim, StoreError>;
    /// `Running` → `Done`.
    async fn finish(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError>;
}

#[derive(Default)]
pub struct MemoryStore {
    payments: Mutex<HashMap<String, (PendingPayment, PaymentState)>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }
}

#[async_trait]
impl PaymentStore for MemoryStore {
    async fn put(&self, payment: PendingPayment) -> Result<(), StoreError> {
        let mut map = self.payments.lock().unwrap_or_else(|e| e.into_inner());
        map.insert(
            payment.payment_id.clone(),
            (payment, PaymentState::AwaitingPayment),
        );
        Ok(())
    }

    async fn get(
        &self,
        payment_id: &str,
    ) -> Result<Option<(PendingPayment, PaymentState)>, StoreError> {
        Ok(self
            .payments
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(payment_id)
            .cloned())
    }

    async fn claim(&self, payment_id: &str) -> Result<Claim, StoreError> {
        let mut map = self.payments.lock().unwrap_or_else(|e| e.into_inner());
        let Some((_, state)) = map.get_mut(payment_id) else {
            return Ok(Claim::Unknown);
        };
        Ok(match state {
            PaymentState::AwaitingPayment => {
                *state = PaymentState::Running;
                Claim::Run
            }
            PaymentState::Running => Claim::Running,
            PaymentState::Done { result, succeeded } => Claim::Done {
                result: result.clone(),
                succeeded: *succeeded,
            },
        })
    }

    async fn finish(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        let mut map = self.payments.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, state)) = map.get_mut(payment_id) {
            *state = PaymentState::Done { result, succeeded };
        }
        Ok(())
    }
}

/// Pending payments in a SQLite file: they survive a restart of the MCP server, and
/// several server processes on one machine can share the file. Claims are atomic
/// updates, so a tool still runs at most once per payment across processes.
pub struct SqliteStore {
    pool: sqlx::SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the file at `path`.
    pub async fn open(path: &std::path::Path) -> Result<Self, StoreError> {
        use sqlx::sqlite::{
            SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
        };
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(fail)?;
        sqlx::query(
            "CREATE TABLE IF NOT EXISTS walleot_payments (
                payment_id TEXT PRIMARY KEY,
                payment    TEXT NOT NULL,
                state      TEXT NOT NULL CHECK (state IN ('awaiting', 'running', 'done')),
                result     TEXT,
                succeeded  INTEGER
            )",
        )
        .execute(&pool)
        .await
        .map_err(fail)?;
        Ok(SqliteStore { pool })
    }
}

fn fail(e: impl std::fmt::Display) -> StoreError {
    StoreError(e.to_string())
}

fn state_of(
    state: &str,
    result: Option<String>,
    succeeded: Option<bool>,
) -> Result<PaymentState, StoreError> {
    Ok(match state {
        "awaiting" => PaymentState::AwaitingPayment,
        "running" => PaymentState::Running,
        _ => PaymentState::Done {
            result: serde_json::from_str(result.as_deref().unwrap_or("null")).map_err(fail)?,
            succeeded: succeeded.unwrap_or(false),
        },
    })
}

#[async_trait]
impl PaymentStore for SqliteStore {
    async fn put(&self, payment: PendingPayment) -> Result<(), StoreError> {
        let text = serde_json::to_string(&payment).map_err(fail)?;
        sqlx::query("INSERT OR REPLACE INTO walleot_payments (payment_id, payment, state) VALUES (?, ?, 'awaiting')")
            .bind(&payment.payment_id)
            .bind(text)
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
            "SELECT payment, state, result, succeeded FROM walleot_payments WHERE payment_id = ?",
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

    async fn claim(&self, payment_id: &str) -> Result<Claim, StoreError> {
        let claimed = sqlx::query("UPDATE walleot_payments SET state = 'running' WHERE payment_id = ? AND state = 'awaiting'")
            .bind(payment_id)
            .execute(&self.pool)
            .await
            .map_err(fail)?;
        if claimed.rows_affected() == 1 {
            return Ok(Claim::Run);
        }
        Ok(match self.get(payment_id).await? {
            None => Claim::Unknown,
            Some((_, PaymentState::Done { result, succeeded })) => {
                Claim::Done { result, succeeded }
            }
            Some(_) => Claim::Running,
        })
    }

    async fn finish(
        &self,
        payment_id: &str,
        result: Value,
        succeeded: bool,
    ) -> Result<(), StoreError> {
        sqlx::query("UPDATE walleot_payments SET state = 'done', result = ?, succeeded = ? WHERE payment_id = ?")
            .bind(result.to_string())
            .bind(succeeded)
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

    fn sample() -> PendingPayment {
        PendingPayment {
            payment_id: "p".into(),
            payment_url: "u".into(),
            tool: "t".into(),
            arguments: object(json!({"a": 1})),
            arguments_hash: "h".into(),
            amount_minor: 1,
            currency: "usd".into(),
            caller: "c".into(),
        }
    }

    async fn claims_once(store: &dyn PaymentStore) {
        store.put(sample()).await.unwrap();
        assert_eq!(
            store.get("p").await.unwrap(),
            Some((sample(), PaymentState::AwaitingPayment))
        );
        assert_eq!(store.claim("p").await.unwrap(), Claim::Run);
        assert_eq!(store.claim("p").await.unwrap(), Claim::Running);
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

    #[tokio::test]
    async fn a_sqlite_payment_is_claimed_once_and_survives_reopening() {
        let dir = std::env::temp_dir().join(format!("walleot-mcp-store-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("payments.db");
        claims_once(&SqliteStore::open(&path).await.unwrap()).await;
        let reopened = SqliteStore::open(&path).await.unwrap();
        assert_eq!(
            reopened.claim("p").await.unwrap(),
            Claim::Done {
                result: json!({"ok": 1}),
                succeeded: true
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_memory_payment_is_claimed_once() {
        claims_once(&MemoryStore::new()).await;
    }
}
