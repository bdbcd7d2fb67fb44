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

    #[tokio::test]
    async fn a_payment_is_claimed_once() {
        let store = MemoryStore::new();
        store
            .put(PendingPayment {
                payment_id: "p".into(),
                payment_url: "u".into(),
                tool: "t".into(),
                arguments: Map::new(),
                arguments_hash: "h".into(),
                amount_minor: 1,
                currency: "usd".into(),
                caller: "c".into(),
            })
            .await
            .unwrap();
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
}
