//! What the service keeps of webhook endpoints and of each event's delivery to them.

use super::StoreError;
use crate::domain::events::Outbox;
use crate::domain::webhooks::{DeliveryOutcome, WebhookEndpointRecord};
use async_trait::async_trait;
use walleot_api::WebhookEndpointStatus;

/// An enabled endpoint, as the fan-out needs it.
#[derive(Debug, Clone)]
pub struct FanOutTarget {
    pub endpoint_id: String,
    pub merchant_id: String,
    pub livemode: bool,
    pub events: Option<Vec<walleot_api::EventType>>,
    /// Every event at or below these `seq`s (of sessions, of mandates) has its
    /// delivery.
    pub session_floor: i64,
    pub mandate_floor: i64,
}

impl FanOutTarget {
    pub fn floor(&self, outbox: Outbox) -> i64 {
        match outbox {
            Outbox::Sessions => self.session_floor,
            Outbox::Mandates => self.mandate_floor,
        }
    }
}

/// An event owed to an endpoint, with the body to post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub endpoint_id: String,
    pub event_id: String,
    pub body: String,
}

/// A delivery taken by a worker: where to post what, and how many attempts came
/// before.
#[derive(Debug, Clone)]
pub struct DueDelivery {
    pub endpoint_id: String,
    pub event_id: String,
    pub url: String,
    pub secret: String,
    pub livemode: bool,
    pub body: String,
    pub attempts: i64,
    /// The end of the caller's lease: it records the outcome only while the delivery is
    /// still leased so (not taken over, nor asked for again meanwhile).
    pub lease_until: i64,
}

#[async_trait]
pub trait WebhookStore: Send + Sync + 'static {
    /// Keeps a new endpoint, its floor at the newest event, unless its merchant already
    /// has `max` endpoints (not deleted) in its mode; answers whether it was kept.
    async fn insert_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpointRecord,
        max: i64,
    ) -> Result<bool, StoreError>;
    /// A merchant's endpoints in one mode, oldest first, without the deleted ones.
    async fn webhook_endpoints(
        &self,
        merchant_id: &str,
        livemode: bool,
    ) -> Result<Vec<WebhookEndpointRecord>, StoreError>;
    async fn webhook_endpoint(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError>;
    /// Sets the status of a merchant's endpoint that is not deleted, at `now`:
    /// deleting gives up its pending deliveries, enabling forgets its failures and
    /// makes the deliveries that waited due; answers the endpoint as it then is.
    async fn set_webhook_endpoint_status(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        status: WebhookEndpointStatus,
        now: i64,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError>;

    /// The enabled endpoints.
    async fn fan_out_targets(&self) -> Result<Vec<FanOutTarget>, StoreError>;
    /// Adds the deliveries not yet there (due at `now`) and raises the endpoints'
    /// floors of one outbox, in one transaction.
    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        outbox: Outbox,
        floors: &[(String, i64)],
        now: i64,
    ) -> Result<(), StoreError>;
    /// Takes up to `limit` due deliveries of enabled endpoints, each leased to the
    /// caller until `lease_until`; several workers never take the same one.
    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError>;
    /// Records an attempt's outcome on the delivery and on its endpoint's health,
    /// unless the delivery is no longer under the attempt's lease; the endpoint is
    /// disabled (its deliveries set aside) when it has failed since `disable_before` or
    /// earlier.
    async fn finish_delivery(
        &self,
        delivery: &DueDelivery,
        outcome: &DeliveryOutcome,
        now: i64,
        disable_before: i64,
    ) -> Result<(), StoreError>;
    /// Makes these deliveries due at once, as first attempts, whether or not they were
    /// made before.
    async fn redeliver(&self, deliveries: &[NewDelivery], now: i64) -> Result<(), StoreError>;
}
