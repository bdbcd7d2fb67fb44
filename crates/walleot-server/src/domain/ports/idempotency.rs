//! What `Idempotency-Key` handling keeps: the answer to replay, written with the change
//! it answers wherever the operation can.

use super::StoreError;
use async_trait::async_trait;

/// An answer to keep for a request sent with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyCompletion {
    pub scope: String,
    pub key: String,
    /// Of the request's method, path and body: the same key with another request is
    /// refused.
    pub fingerprint: String,
    /// When the request arrived; the answer is kept for the retention from then.
    pub created_at: i64,
    /// Before this instant an answer already kept for the key stands; after it, the
    /// old one is forgotten and this one kept.
    pub forget_before: i64,
    pub status: u16,
    pub body: Vec<u8>,
}

/// What an earlier request with the same key left.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// Nothing (or only something forgotten or abandoned): the caller runs the request.
    Acquired,
    /// The same request ran to completion before: answer this again.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used for a different request.
    Mismatch,
    /// The same request is still running (a claim of an earlier version of the service
    /// that has not yet gone stale).
    InProgress,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// What an earlier request with `key` left, read without writing anything. A claim
    /// still running after `stale_ms` counts as abandoned; a record older than
    /// `retain_ms` is forgotten.
    async fn look_up_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        stale_ms: i64,
        retain_ms: i64,
    ) -> Result<IdempotencyClaim, StoreError>;
    /// Keeps an answer in a transaction of its own (shared with concurrent writes),
    /// unless an answer for the key is kept already:
    /// [`StoreError::AnsweredMeanwhile`] then.
    async fn complete_idempotency_key(
        &self,
        done: &IdempotencyCompletion,
    ) -> Result<(), StoreError>;
    /// Deletes records older than `cutoff_ms`; returns how many.
    async fn purge_idempotency_keys(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
}
