//! What the service keeps of mandates and what was spent under them.

use super::StoreError;
use crate::domain::mandates::{MandateEvent, MandateRecord, Usage};
use async_trait::async_trait;
use walleot_api::{Currency, MandateStatus};

#[async_trait]
pub trait MandateStore: Send + Sync + 'static {
    /// Stores a new mandate with its `mandate.granted` event.
    async fn insert_mandate(
        &self,
        mandate: &MandateRecord,
        granted: &MandateEvent,
    ) -> Result<(), StoreError>;
    async fn find_mandate(&self, id: &str) -> Result<Option<MandateRecord>, StoreError>;
    /// Marks the mandate revoked at the event's instant, with the event, unless it
    /// already is; answers the mandate as it then is.
    async fn revoke_mandate(
        &self,
        id: &str,
        revoked: &MandateEvent,
    ) -> Result<MandateRecord, StoreError>;
    /// The mandates of a merchant's customer in one mode and currency, newest first,
    /// whatever their status.
    async fn mandates_for_customer(
        &self,
        merchant_id: &str,
        livemode: bool,
        customer: &str,
        currency: Currency,
    ) -> Result<Vec<MandateRecord>, StoreError>;
    /// The position of a mandate in its merchant's list, for cursors.
    async fn mandate_seq(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// Newest first, strictly older than `before_seq` when given; with `status`, as
    /// of `now_ms`. Answers whether more follow.
    #[allow(clippy::too_many_arguments)]
    async fn list_mandates(
        &self,
        merchant_id: &str,
        livemode: bool,
        customer: Option<&str>,
        status: Option<MandateStatus>,
        before_seq: Option<i64>,
        now_ms: i64,
        limit: i64,
    ) -> Result<(Vec<MandateRecord>, bool), StoreError>;
    /// A payer's mandates, newest first.
    async fn mandates_of_payer(&self, payer_id: &str) -> Result<Vec<MandateRecord>, StoreError>;
    /// Records `mandate.expired` for up to `batch` mandates past their expiry at
    /// `now_ms` that are not revoked and have no such event yet; answers how many.
    async fn record_mandate_expiries(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError>;
    /// The recorded changes of one mandate, oldest first: (type, from, to, at).
    async fn mandate_events(&self, id: &str) -> Result<Vec<MandateEvent>, StoreError>;
    /// What was spent under a mandate (payments held or captured), in total and since
    /// `period_start` when given.
    async fn mandate_usage(&self, id: &str, period_start: Option<i64>)
        -> Result<Usage, StoreError>;
}
