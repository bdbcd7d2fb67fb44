//! What the service keeps of payment sessions and their events.

use super::{IdempotencyCompletion, StoreError};
use crate::domain::payments::{Plan, RefundRecord};
use crate::domain::sessions::{SessionEvent, SessionRecord};
use async_trait::async_trait;
use walleot_api::SessionStatus;

/// The outcome of a plan that changes a session.
pub type Transition = super::PlanOutcome<SessionRecord>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionRecord>,
    pub has_more: bool,
}

/// A payment that pays a new session at creation (under a mandate), with the answer to
/// keep for its idempotency key in place of the pending one when it is written.
#[derive(Debug, Clone)]
pub struct CoveredPayment {
    pub plan: Plan,
    pub completion: Option<IdempotencyCompletion>,
}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// The ids of sessions whose status (or capture status) this process changed, sent
    /// once the change is committed, so that long polls wake without re-reading. A
    /// receiver that lags misses ids: it should then re-read what it watches. Changes
    /// made by another process sharing the database are not seen here.
    fn session_changes(&self) -> tokio::sync::broadcast::Receiver<String>;

    /// Stores a new session with its event and the answer to replay. With `covered`, the
    /// same transaction then writes the payment if its precondition holds, keeping its
    /// answer instead; a payment whose precondition fails, or that a wallet cannot
    /// afford, is left out and the session stays pending. Answers the paid session when
    /// the payment was written.
    async fn insert_session(
        &self,
        session: &SessionRecord,
        created: &SessionEvent,
        completion: Option<&IdempotencyCompletion>,
        covered: Option<&CoveredPayment>,
    ) -> Result<Option<SessionRecord>, StoreError>;
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
    /// A session by id alone, with its merchant's name: what a checkout page shows.
    async fn session_for_checkout(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRecord, String)>, StoreError>;
    /// A session by id alone.
    async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError>;
    /// Up to `batch` pending sessions whose expiry has passed at `now_ms`.
    async fn due_sessions(&self, now_ms: i64, batch: i64)
        -> Result<Vec<SessionRecord>, StoreError>;
    /// The recorded changes of one session, oldest first.
    async fn session_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError>;
    /// The refunds of one session, oldest first.
    async fn refunds_of(&self, session_id: &str) -> Result<Vec<RefundRecord>, StoreError>;
    /// The payer who approved a session's payment, once paid.
    async fn payer_of(&self, session_id: &str) -> Result<Option<String>, StoreError>;
}
