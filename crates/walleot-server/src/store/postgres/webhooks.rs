//! Webhook endpoints and deliveries in PostgreSQL. Instances claim deliveries with
//! `FOR UPDATE SKIP LOCKED`, so that two never post the same attempt. Events take their
//! `seq` when inserted but become visible when committed, so a lower `seq` may appear
//! after a higher one: the fan-out raises its floors only past the transactions that
//! were running when it read (see `Store::outbox_horizon`).

use super::PostgresStore;
use crate::domain::events::Outbox;
use crate::domain::ports::{DueDelivery, FanOutTarget, NewDelivery, StoreError, WebhookStore};
use crate::domain::webhooks::{events_text, DeliveryOutcome, WebhookEndpointRecord};
use crate::store::rows::webhook_sql as sql;
use crate::store::rows::*;
use async_trait::async_trait;
use std::sync::LazyLock;
use walleot_api::WebhookEndpointStatus;

static CLAIM_ANSWERING: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE OF d SKIP LOCKED", *sql::DUE_ANSWERING));
static CLAIM_FAILING: LazyLock<String> =
    LazyLock::new(|| format!("{} FOR UPDATE OF d SKIP LOCKED", *sql::DUE_FAILING));

#[async_trait]
impl WebhookStore for PostgresStore {
    async fn insert_webhook_endpoint(
        &self,
        e: &WebhookEndpointRecord,
        max: i64,
    ) -> Result<bool, StoreError> {
        let inserted = sqlx::query(sql::INSERT_ENDPOINT)
            .bind(&e.id)
            .bind(&e.merchant_id)
            .bind(e.livemode)
            .bind(&e.url)
            .bind(events_text(&e.events))
            .bind(&e.secret)
            .bind(e.created_at)
            .bind(max)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(inserted == 1)
    }

    async fn webhook_endpoints(
        &self,
        merchant_id: &str,
        livemode: bool,
    ) -> Result<Vec<WebhookEndpointRecord>, StoreError> {
        sqlx::query(&sql::ENDPOINTS)
            .bind(merchant_id)
            .bind(livemode)
            .fetch_all(&self.pool)
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
        sqlx::query(&sql::ENDPOINT)
            .bind(merchant_id)
            .bind(livemode)
            .bind(id)
            .fetch_optional(&self.pool)
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
        let name: &'static str = status.into();
        let mut tx = self.pool.begin().await?;
        let set = sqlx::query(sql::SET_STATUS)
            .bind(merchant_id)
            .bind(livemode)
            .bind(id)
            .bind(name)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if set == 0 {
            return Ok(None);
        }
        let deliveries = match status {
            WebhookEndpointStatus::Deleted => sqlx::query(sql::GIVE_UP).bind(id).bind(now),
            WebhookEndpointStatus::Enabled => sqlx::query(sql::UNPARK).bind(id).bind(now),
            WebhookEndpointStatus::Disabled => sqlx::query(sql::PARK).bind(id),
        };
        deliveries.execute(&mut *tx).await?;
        tx.commit().await?;
        sqlx::query(&sql::ENDPOINT_BY_ID)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(webhook_endpoint_from_row)
            .transpose()
    }

    async fn fan_out_targets(&self) -> Result<Vec<FanOutTarget>, StoreError> {
        sqlx::query(sql::TARGETS)
            .fetch_all(&self.pool)
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
        let mut tx = self.pool.begin().await?;
        for d in deliveries {
            sqlx::query(sql::ENQUEUE)
                .bind(&d.endpoint_id)
                .bind(&d.event_id)
                .bind(&d.body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        let raise = match outbox {
            Outbox::Sessions => sql::RAISE_SESSION_FLOOR,
            Outbox::Mandates => sql::RAISE_MANDATE_FLOOR,
        };
        for (endpoint, floor) in floors {
            sqlx::query(raise)
                .bind(endpoint)
                .bind(floor)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn claim_deliveries(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<DueDelivery>, StoreError> {
        let mut tx = self.pool.begin().await?;
        let mut due = Vec::new();
        for query in [&*CLAIM_ANSWERING, &*CLAIM_FAILING] {
            let room = limit - due.len() as i64;
            if room == 0 {
                break;
            }
            for row in sqlx::query(query)
                .bind(now)
                .bind(room)
                .fetch_all(&mut *tx)
                .await?
            {
                due.push(due_delivery_from_row(&row)?);
            }
        }
        for d in &mut due {
            d.lease_until = lease_until;
            sqlx::query(sql::LEASE)
                .bind(&d.endpoint_id)
                .bind(&d.event_id)
                .bind(lease_until)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(due)
    }

    async fn finish_delivery(
        &self,
        delivery: &DueDelivery,
        outcome: &DeliveryOutcome,
        now: i64,
        disable_before: i64,
    ) -> Result<(), StoreError> {
        let (status, next, error) = finished_delivery(outcome);
        let endpoint_id = delivery.endpoint_id.as_str();
        let mut tx = self.pool.begin().await?;
        let recorded = sqlx::query(sql::FINISH)
            .bind(endpoint_id)
            .bind(&delivery.event_id)
            .bind(status)
            .bind(next)
            .bind(error)
            .bind(now)
            .bind(delivery.lease_until)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if recorded == 0 {
            // Taken over, or asked for again, meanwhile.
            return Ok(());
        }
        match error {
            None => {
                sqlx::query(sql::HEALTHY)
                    .bind(endpoint_id)
                    .execute(&mut *tx)
                    .await?;
            }
            Some(error) => {
                sqlx::query(sql::FAILING)
                    .bind(endpoint_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let disabled = sqlx::query(sql::DISABLE)
                    .bind(endpoint_id)
                    .bind(disable_before)
                    .bind(disabled_reason(error))
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if disabled == 1 {
                    sqlx::query(sql::PARK)
                        .bind(endpoint_id)
                        .execute(&mut *tx)
                        .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn redeliver(&self, deliveries: &[NewDelivery], now: i64) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        for d in deliveries {
            sqlx::query(sql::REDELIVER)
                .bind(&d.endpoint_id)
                .bind(&d.event_id)
                .bind(&d.body)
                .bind(now)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}
