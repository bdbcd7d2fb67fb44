//! What `Idempotency-Key` handling keeps: a claim per key, then the answer to replay.

use super::StoreError;
use async_trait::async_trait;

/// What `Idempotency-Key` handling needs to remember of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyCompletion {
    pub scope: String,
    pub key: String,
    pub status: u16,
    pub body: Vec<u8>,
}

/// The result of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use (or an abandoned earlier try): the caller runs the request.
    Acquired,
    /// The same request ran to completion before: answer this again.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used for a different request.
    Mismatch,
    /// The same request is still running.
    InProgress,
}

#[async_trait]
pub trait IdempotencyStore: Send + Sync + 'static {
    /// Claims `key` for a request with `fingerprint`. A claim still in progress after
    /// `stale_ms` is taken to be abandoned (its request died) and may be claimed again;
    /// a record older than `retain_ms` is forgotten.
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        stale_ms: i64,
        retain_ms: i64,
    ) -> Result<IdempotencyClaim, StoreError>;
    /// Records the answer of a claimed key, unless it was recorded already.
    async fn complete_idempotency_key(
        &self,
        done: &IdempotencyCompletion,
    ) -> Result<(), StoreError>;
    /// Forgets a claim whose request failed in a way worth retrying.
    async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<(), StoreError>;
    /// Deletes records older than `cutoff_ms`; returns how many.
    async fn purge_idempotency_keys(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
}
