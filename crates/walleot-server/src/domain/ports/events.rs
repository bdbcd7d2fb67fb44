//! What the service keeps of events: the records of sessions' and mandates' changes,
//! read as one list and as the outbox of webhooks.

use super::StoreError;
use crate::domain::events::{EventRecord, Outbox};
use async_trait::async_trait;

/// Where an event stands in the list of `GET /v1/events`: by time, then record, then
/// `seq`.
pub type EventPosition = (i64, i64, i64);

/// An event of one outbox, with its place in it.
#[derive(Debug, Clone)]
pub struct OutboxEvent {
    pub seq: i64,
    pub event: EventRecord,
}

#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// Where event `id` of the merchant's, in one mode, stands in their list.
    async fn event_position(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<EventPosition>, StoreError>;
    /// The merchant's events in one mode, newest first, strictly before `before` when
    /// given; `limit` of them, and whether more follow.
    async fn list_events(
        &self,
        merchant_id: &str,
        livemode: bool,
        before: Option<EventPosition>,
        limit: i64,
    ) -> Result<(Vec<EventRecord>, bool), StoreError>;
    /// Events of one outbox after `seq`, in order, at most `limit`.
    async fn outbox_after(
        &self,
        outbox: Outbox,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEvent>, StoreError>;
    /// One event by its id, of either outbox.
    async fn find_event(&self, id: &str) -> Result<Option<EventRecord>, StoreError>;
}
