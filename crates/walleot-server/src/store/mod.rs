//! Storage behind one narrow interface. The domain speaks to [`Store`]; each database
//! has its own implementation beside this file with its SQL and migrations, so that a
//! new database joins without any change to handlers or domain code.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::domain::sessions::{SessionEvent, SessionRecord};
use crate::domain::Mode;
use async_trait::async_trait;
use walleot_api::SessionStatus;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("unsupported database URL `{0}`: use sqlite://PATH")]
    UnsupportedUrl(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub merchant_id: String,
    /// Filled in by reads; ignored on insert.
    pub merchant_name: String,
    pub mode: Mode,
    /// Hex HMAC-SHA256 of the key.
    pub hash: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The outcome of asking for a status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The session was pending and is now in the new state; its event is recorded.
    Applied(SessionRecord),
    /// The session was not pending (or had expired); it is returned unchanged.
    Refused(SessionRecord),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionRecord>,
    pub has_more: bool,
}

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
pub trait Store: Send + Sync + 'static {
    /// Answers when the database can be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A secret kept by the database itself, created on first use.
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError>;

    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), StoreError>;
    /// By id or by name.
    async fn find_merchant(&self, id_or_name: &str) -> Result<Option<Merchant>, StoreError>;
    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// False when no unrevoked key has this id.
    async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    async fn insert_session(
        &self,
        session: &SessionRecord,
        created: &SessionEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError>;
    async fn get_session(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// The position of a session in its owner's list, for cursors.
    async fn session_seq(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// Newest first, strictly older than `before_seq` when given. A `status` filter of
    /// pending or expired counts expiry as of `now_ms`.
    async fn list_sessions(
        &self,
        merchant_id: &str,
        livemode: bool,
        status: Option<SessionStatus>,
        before_seq: Option<i64>,
        now_ms: i64,
        limit: i64,
    ) -> Result<SessionPage, StoreError>;
    /// Moves a pending session to `to`, with its event, atomically. Only `expired` may
    /// be applied to a session whose expiry has passed.
    async fn transition(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        to: SessionStatus,
        now_ms: i64,
    ) -> Result<Transition, StoreError>;
    /// Expires up to `batch` overdue pending sessions; returns how many.
    async fn expire_due(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError>;
    /// The recorded changes of one session, oldest first.
    async fn session_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError>;

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

/// Opens the store a database URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
