//! Webhook endpoints and deliveries in SQLite. One writer commits in `seq` order, so an
//! event is visible only after every event below it: the outbox settles at once.

use super::SqliteStore;
use crate::domain::events::Outbox;
use crate::domain::ports::{DueDelivery, FanOutTarget, NewDelivery, StoreError, WebhookStore};
use crate::domain::webhooks::{events_text, DeliveryOutcome, WebhookEndpointRecord};
use crate::store::rows::webhook_sql as sql;
use crate::store::rows::*;
use async_trait::async_trait;
use rusqlite::params;
use walleot_api::WebhookEndpointStatus;

sqlite!(INSERT_ENDPOINT = sql::INSERT_ENDPOINT);
sqlite!(ENDPOINTS = *sql::ENDPOINTS);
sqlite!(ENDPOINT = *sql::ENDPOINT);
sqlite!(ENDPOINT_BY_ID = *sql::ENDPOINT_BY_ID);
sqlite!(SET_STATUS = sql::SET_STATUS);
sqlite!(ENQUEUE = sql::ENQUEUE);
sqlite!(RAISE_SESSION_FLOOR = sql::RAISE_SESSION_FLOOR);
sqlite!(RAISE_MANDATE_FLOOR = sql::RAISE_MANDATE_FLOOR);
sqlite!(DUE_ANSWERING = *sql::DUE_ANSWERING);
sqlite!(DUE_FAILING = *sql::DUE_FAILING);
sqlite!(LEASE = sql::LEASE);
sqlite!(FINISH = sql::FINISH);
sqlite!(HEALTHY = sql::HEALTHY);
sqlite!(FAILING = sql::FAILING);
sqlite!(DISABLE = sql::DISABLE);
sqlite!(REDELIVER = sql::REDELIVER);
sqlite!(GIVE_UP = sql::GIVE_UP);
sqlite!(PARK = sql::PARK);
sqlite!(UNPARK = sql::UNPARK);

#[async_trait]
impl WebhookStore for SqliteStore {
    async fn insert_webhook_endpoint(
        &self,
        endpoint: &WebhookEndpointRecord,
        max: i64,
    ) -> Result<bool, StoreError> {
        let e = endpoint.clone();
        self.writer
            .run(move |db| {
                let inserted = db.prepare_cached(&INSERT_ENDPOINT)?.execute(params![
                    e.id,
                    e.merchant_id,
                    e.livemode,
                    e.url,
                    events_text(&e.events),
                    e.secret,
                    e.created_at,
                    max
                ])?;
                Ok(inserted == 1)
            })
            .await
    }

    async fn webhook_endpoints(
        &self,
        merchant_id: &str,
        livemode: bool,
    ) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        sqlx::query(&ENDPOINTS)
            .bind(merchant_id)
            .bind(livemode)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(webhook_endpoint_from_row)
            .collect()
    }

    async fn webhook_endpoint(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError> {
        sqlx::query(&ENDPOINT)
            .bind(merchant_id)
            .bind(livemode)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(webhook_endpoint_from_row)
            .transpose()
    }

    async fn set_webhook_endpoint_status(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        status: WebhookEndpointStatus,
        now: i64,
    ) -> Result<Option<WebhookEndpointRecord>, StoreError> {
        let (merchant_id, id) = (merchant_id.to_string(), id.to_string());
        let name: &'static str = status.into();
        self.writer
            .run(move |db| {
                if db.prepare_cached(&SET_STATUS)?.execute(params![
                    merchant_id,
                    livemode,
                    id,
                    name
                ])? == 0
                {
                    return Ok(None);
                }
                match status {
                    WebhookEndpointStatus::Deleted => {
                        db.prepare_cached(&GIVE_UP)?.execute(params![id, now])?;
                    }
                    WebhookEndpointStatus::Enabled => {
                        db.prepare_cached(&UNPARK)?.execute(params![id, now])?;
                    }
                    WebhookEndpointStatus::Disabled => {
                        db.prepare_cached(&PARK)?.execute([&id])?;
                    }
                }
                let mut read = db.prepare_cached(&ENDPOINT_BY_ID)?;
                let mut rows = read.query([&id])?;
                rows.next()?.map(webhook_endpoint_from_row).transpose()
            })
            .await
    }

    async fn fan_out_targets(&self) -> Result<Vec<FanOutTarget>, StoreError> {
        sqlx::query(sql::TARGETS)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(fan_out_target_from_row)
            .collect()
    }

    async fn enqueue_deliveries(
        &self,
        deliveries: &[NewDelivery],
        outbox: Outbox,
        floors: &[(String, i64)],
        now: i64,
    ) -> Result<(), StoreError> {
        let (deliveries, floors) = (deliveries.to_vec(), floors.to_vec());
        self.writer
            .run(move |db| {
                let mut enqueue = db.prepare_cached(&ENQUEUE)?;
                for d in &deliveries {
                    enqueue.execute(params![d.endpoint_id, d.event_id, d.body, now])?;
                }
                let mut raise = db.prepare_cached(match outbox {
                    Outbox::Sessions => &RAISE_SESSION_FLOOR,
                    Outbox::Mandates => &RAISE_MANDATE_FLOOR,
                })?;
                for (endpoint, floor) in &floors {
                    raise.execute(params![endpoint, floor])?;
                }
                Ok(())
            })
            .await
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        self.writer
            .run(move |db| {
                let mut due = Vec::new();
                for query in [&*DUE_ANSWERING, &*DUE_FAILING] {
                    let room = limit - due.len() as i64;
                    if room == 0 {
                        break;
                    }
                    let mut read = db.prepare_cached(query)?;
                    let mut rows = read.query(params![now, room])?;
                    while let Some(row) = rows.next()? {
                        due.push(due_delivery_from_row(row)?);
                    }
                }
                let mut lease = db.prepare_cached(&LEASE)?;
                for d in &mut due {
                    lease.execute(params![d.endpoint_id, d.event_id, lease_until])?;
                    d.lease_until = lease_until;
                }
                Ok(due)
            })
            .await
    }

    async fn finish_delivery(
        &self,
        delivery: &DueDelivery,
        outcome: &DeliveryOutcome,
        now: i64,
        disable_before: i64,
    ) -> Result<(), StoreError> {
        let (endpoint_id, event_id, lease, outcome) = (
            delivery.endpoint_id.clone(),
            delivery.event_id.clone(),
            delivery.lease_until,
            outcome.clone(),
        );
        self.writer
            .run(move |db| {
                let (status, next, error) = finished_delivery(&outcome);
                let recorded = db.prepare_cached(&FINISH)?.execute(params![
                    endpoint_id,
                    event_id,
                    status,
                    next,
                    error,
                    now,
                    lease
                ])?;
                if recorded == 0 {
                    // Taken over, or asked for again, meanwhile.
                    return Ok(());
                }
                match error {
                    None => {
                        db.prepare_cached(&HEALTHY)?.execute([&endpoint_id])?;
                    }
                    Some(error) => {
                        db.prepare_cached(&FAILING)?
                            .execute(params![endpoint_id, now])?;
                        let disabled = db.prepare_cached(&DISABLE)?.execute(params![
                            endpoint_id,
                            disable_before,
                            disabled_reason(error)
                        ])?;
                        if disabled == 1 {
                            db.prepare_cached(&PARK)?.execute([&endpoint_id])?;
                        }
                    }
                }
                Ok(())
            })
            .await
    }

    async fn redeliver(&self, deliveries: &[NewDelivery], now: i64) -> Result<(), StoreError> {
        let deliveries = deliveries.to_vec();
        self.writer
            .run(move |db| {
                let mut redeliver = db.prepare_cached(&REDELIVER)?;
                for d in &deliveries {
                    redeliver.execute(params![d.endpoint_id, d.event_id, d.body, now])?;
                }
                Ok(())
            })
            .await
    }
}
