//! The storage ports: what the domain needs kept, one trait per aggregate. The domain
//! speaks to [`Store`] only; each database implements these traits in `crate::store`,
//! beside its SQL and migrations, so that a new database joins without touching the
//! domain, and no database type crosses this boundary.

mod events;
mod idempotency;
mod ledger;
mod mandates;
mod merchants;
mod payers;
mod sessions;
mod webhooks;

pub use events::{EventPosition, EventStore, OutboxEvent};
pub use idempotency::{IdempotencyClaim, IdempotencyCompletion, IdempotencyStore};
pub use ledger::{HistoryEntry, LedgerStore, PlanOutcome};
pub use mandates::MandateStore;
pub use merchants::{ApiKeyRecord, Merchant, MerchantStore};
pub use payers::PayerStore;
pub use sessions::{CoveredPayment, SessionPage, SessionStore, Transition};
pub use webhooks::{DueDelivery, FanOutTarget, NewDelivery, WebhookStore};

use crate::domain::ledger::LedgerError;
use crate::domain::sessions::SessionRecord;
use async_trait::async_trait;

/// Why the store could not do what was asked. Database errors arrive as their text:
/// the domain and the API never see a database's own types.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database write failed: {0}")]
    WriteFailed(String),
    /// The database cannot be reached (down, restarting, or no connection free in
    /// time); nothing was written, or the outcome of a commit is unknown.
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    /// The database ended the transaction to settle a conflict with another one
    /// (a deadlock); nothing was written, and running it again is expected to succeed.
    #[error("the database ended the transaction in a conflict: {0}")]
    Contended(String),
    /// A value the database cannot hold (text with a NUL character); nothing was
    /// written.
    #[error("text must not contain a NUL character")]
    Unstorable(String),
    #[error("unsupported database URL `{0}`: use sqlite://PATH or postgres://USER@HOST:PORT/DB")]
    UnsupportedUrl(String),
    /// Another request with the same idempotency key was answered first (by another
    /// process sharing the database); nothing was written.
    #[error("a request with this Idempotency-Key was answered meanwhile; send it again to get that answer")]
    AnsweredMeanwhile,
    /// A transfer broke a rule of the ledger; nothing was written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// A key found by its hash, and the session asked for if the key's account has it.
pub type KeyAndSession = (Option<ApiKeyRecord>, Option<SessionRecord>);

/// Everything the service keeps, in one database.
#[async_trait]
pub trait Store:
    SessionStore
    + MerchantStore
    + IdempotencyStore
    + LedgerStore
    + PayerStore
    + MandateStore
    + WebhookStore
    + EventStore
{
    /// Where commits may come out of `seq` order: the oldest transaction still running
    /// and the next to start, as the database counts them (an event seen now is
    /// followed by no lower `seq` once the oldest running is past the next to start as
    /// it was now). `None` where commits follow `seq`.
    async fn outbox_horizon(&self) -> Result<Option<(i64, i64)>, StoreError> {
        Ok(None)
    }

    /// Answers when the database can be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    /// A secret kept by the database itself, created on first use.
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError>;

    /// Keeps a new key for signing receipts.
    async fn insert_signing_key(
        &self,
        key: &crate::domain::receipts::SigningKeyRecord,
    ) -> Result<(), StoreError>;
    /// Every key that signs receipts, newest first.
    async fn signing_keys(
        &self,
    ) -> Result<Vec<crate::domain::receipts::SigningKeyRecord>, StoreError>;

    /// The key with this hash (with its merchant's name) and, when its merchant owns it
    /// in the key's mode, session `session_id`: the two reads of a status check in one.
    /// `None` when the store cannot answer so right now (it has no such read, or the
    /// database is busy): the caller then reads the usual way.
    async fn key_and_session(
        &self,
        _key_hash: &str,
        _session_id: &str,
    ) -> Option<Result<KeyAndSession, StoreError>> {
        None
    }
}
