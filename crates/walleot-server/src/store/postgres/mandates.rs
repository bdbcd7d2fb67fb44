//! Mandates in PostgreSQL, and the budget check of a payment under one.

use super::PostgresStore;
use crate::domain::mandates::{MandateEvent, MandateRecord, Usage};
use crate::domain::payments::{MandateBudget, MandateSpend};
use crate::domain::ports::{MandateStore, StoreError};
use crate::store::rows::*;
use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use walleot_api::{Currency, MandateStatus};

async fn insert_event(db: &mut PgConnection, event: &MandateEvent) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO mandate_events (id, mandate_id, type, from_status, to_status, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&event.id)
    .bind(&event.mandate_id)
    .bind(event.kind)
    .bind(event.from_status.map(MandateStatus::as_str))
    .bind(event.to_status.as_str())
    .bind(event.created_at)
    .execute(db)
    .await?;
    Ok(())
}

/// Whether a payment of `budget.amount` still fits the mandate, read in the plan's
/// transaction: not revoked, not expired, and within its period and total limits.
/// The mandate's row is locked first, so that a concurrent charge under it (from any
/// instance) waits for this transaction and then counts what it spent.
pub(super) async fn budget_holds(
    db: &mut PgConnection,
    budget: &MandateBudget,
) -> Result<bool, StoreError> {
    let active = sqlx::query(
        "SELECT id FROM mandates WHERE id = $1 AND revoked_at IS NULL AND expires_at > $2 \
         FOR NO KEY UPDATE",
    )
    .bind(&budget.mandate_id)
    .bind(budget.now_ms)
    .fetch_optional(&mut *db)
    .await?
    .is_some();
    if !active {
        return Ok(false);
    }
    // A statement of its own after the lock: it sees what the previous holder committed.
    let usage = sqlx::query(USAGE)
        .bind(&budget.mandate_id)
        .bind(budget.period_start.unwrap_or(i64::MIN))
        .fetch_optional(&mut *db)
        .await?
        .map(|row| usage_from_row(&row, budget.period_start))
        .transpose()?
        .unwrap_or_default();
    let fits =
        |spent: i64, limit: Option<i64>| limit.is_none_or(|max| spent + budget.amount <= max);
    Ok(fits(usage.in_period, budget.period_limit) && fits(usage.total, budget.total_limit))
}

/// Adds a payment to (or gives one back from) the mandate's counters, in the plan's
/// write.
pub(super) async fn spend_in(
    db: &mut PgConnection,
    spend: &MandateSpend,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE mandates SET spent_total = spent_total + $1 WHERE id = $2")
        .bind(spend.amount)
        .bind(&spend.mandate_id)
        .execute(&mut *db)
        .await?;
    let Some(start) = spend.period_start else {
        return Ok(());
    };
    // A give-back finds the row its payment made (the insert's CHECK would refuse a
    // negative first value before the conflict is seen).
    let sql = if spend.amount >= 0 {
        "INSERT INTO mandate_spending (mandate_id, period_start, spent) VALUES ($1, $2, $3) \
         ON CONFLICT (mandate_id, period_start) \
         DO UPDATE SET spent = mandate_spending.spent + $3"
    } else {
        "UPDATE mandate_spending SET spent = spent + $3 WHERE mandate_id = $1 AND period_start = $2"
    };
    sqlx::query(sql)
        .bind(&spend.mandate_id)
        .bind(start)
        .bind(spend.amount)
        .execute(&mut *db)
        .await?;
    Ok(())
}

/// What was spent under a mandate, from its counters: one row, read in the plan's
/// transaction by [`budget_holds`] and through the pool by `mandate_usage`. `$1` is the
/// mandate, `$2` the start of its period (`i64::MIN` without one).
const USAGE: &str = "SELECT m.spent_total AS total, \
                            COALESCE((SELECT sp.spent FROM mandate_spending sp \
                                      WHERE sp.mandate_id = m.id AND sp.period_start = $2), 0) \
                                AS in_period \
                     FROM mandates m WHERE m.id = $1";

#[async_trait]
impl MandateStore for PostgresStore {
    async fn insert_mandate(
        &self,
        mandate: &MandateRecord,
        granted: &MandateEvent,
    ) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            let limits = &mandate.limits;
            sqlx::query(
                "INSERT INTO mandates (id, merchant_id, livemode, customer, payer_id, currency, \
                                       per_call_limit, period, period_limit, total_limit, \
                                       granted_with, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)",
            )
            .bind(&mandate.id)
            .bind(&mandate.merchant_id)
            .bind(mandate.livemode)
            .bind(&mandate.customer)
            .bind(&mandate.payer_id)
            .bind(mandate.currency.code())
            .bind(limits.per_call)
            .bind(limits.period.map(|(p, _)| p.as_str()))
            .bind(limits.period.map(|(_, max)| max))
            .bind(limits.total)
            .bind(&mandate.granted_with)
            .bind(mandate.created_at)
            .bind(mandate.expires_at)
            .execute(&mut *tx)
            .await?;
            insert_event(&mut tx, granted).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn find_mandate(&self, id: &str) -> Result<Option<MandateRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MANDATE_COLUMNS} FROM mandates WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(mandate_from_row)
        .transpose()
    }

    async fn revoke_mandate(
        &self,
        id: &str,
        revoked: &MandateEvent,
    ) -> Result<MandateRecord, StoreError> {
        self.write(|mut tx| async move {
            let changed = sqlx::query(&format!(
                "UPDATE mandates SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL \
                 RETURNING {MANDATE_COLUMNS}"
            ))
            .bind(revoked.created_at)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(mandate_from_row)
            .transpose()?;
            let mandate = match changed {
                Some(mandate) => {
                    insert_event(&mut tx, revoked).await?;
                    mandate
                }
                None => {
                    let row = sqlx::query(&format!(
                        "SELECT {MANDATE_COLUMNS} FROM mandates WHERE id = $1"
                    ))
                    .bind(id)
                    .fetch_one(&mut *tx)
                    .await?;
                    mandate_from_row(&row)?
                }
            };
            Ok((tx, mandate))
        })
        .await
    }

    async fn mandates_for_customer(
        &self,
        merchant_id: &str,
        livemode: bool,
        customer: &str,
        currency: Currency,
    ) -> Result<Vec<MandateRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MANDATE_COLUMNS} FROM mandates \
             WHERE merchant_id = $1 AND livemode = $2 AND customer = $3 AND currency = $4 \
             ORDER BY seq DESC LIMIT 20"
        ))
        .bind(merchant_id)
        .bind(livemode)
        .bind(customer)
        .bind(currency.code())
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(mandate_from_row)
        .collect()
    }

    async fn mandate_seq(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT seq FROM mandates WHERE id = $1 AND merchant_id = $2 AND livemode = $3",
        )
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn list_mandates(
        &self,
        merchant_id: &str,
        livemode: bool,
        customer: Option<&str>,
        status: Option<MandateStatus>,
        before_seq: Option<i64>,
        now_ms: i64,
        limit: i64,
    ) -> Result<(Vec<MandateRecord>, bool), StoreError> {
        // `$6` (the instant) is bound only where the filter uses it.
        let (status_filter, at_now) = match status {
            None => ("TRUE", false),
            Some(MandateStatus::Active) => ("revoked_at IS NULL AND expires_at > $6", true),
            Some(MandateStatus::Revoked) => ("revoked_at IS NOT NULL", false),
            Some(MandateStatus::Expired) => ("revoked_at IS NULL AND expires_at <= $6", true),
        };
        let sql = format!(
            "SELECT {MANDATE_COLUMNS} FROM mandates \
             WHERE merchant_id = $1 AND livemode = $2 AND seq < $3 \
               AND ($4::TEXT IS NULL OR customer = $4) AND {status_filter} \
             ORDER BY seq DESC LIMIT $5"
        );
        let mut query = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(livemode)
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(customer)
            .bind(limit + 1);
        if at_now {
            query = query.bind(now_ms);
        }
        let rows = query.fetch_all(&self.pool).await?;
        let mut mandates = rows
            .iter()
            .map(mandate_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = mandates.len() as i64 > limit;
        mandates.truncate(limit as usize);
        Ok((mandates, has_more))
    }

    async fn mandates_of_payer(&self, payer_id: &str) -> Result<Vec<MandateRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MANDATE_COLUMNS} FROM mandates WHERE payer_id = $1 ORDER BY seq DESC"
        ))
        .bind(payer_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(mandate_from_row)
        .collect()
    }

    async fn record_mandate_expiries(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError> {
        // Instances running this at once may pick the same mandates: the unique index
        // on expiry events makes the later insert of each a no-op. A fixed order (ties
        // by id) makes them wait on each other's rows in turn, not in a deadlock.
        self.write(|mut tx| async move {
            let recorded = sqlx::query(
                "INSERT INTO mandate_events (id, mandate_id, type, from_status, to_status, created_at) \
                 SELECT 'evt_' || substr(md5(random()::text || m.id), 1, 24), m.id, 'mandate.expired', 'active', 'expired', $1 FROM mandates m \
                 WHERE m.revoked_at IS NULL AND m.expires_at <= $1 \
                   AND NOT EXISTS (SELECT 1 FROM mandate_events e \
                                   WHERE e.mandate_id = m.id AND e.type = 'mandate.expired') \
                 ORDER BY m.expires_at, m.id LIMIT $2 \
                 ON CONFLICT (mandate_id) WHERE type = 'mandate.expired' DO NOTHING",
            )
            .bind(now_ms)
            .bind(batch)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok((tx, recorded as usize))
        })
        .await
    }

    async fn mandate_events(&self, id: &str) -> Result<Vec<MandateEvent>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MANDATE_EVENT_COLUMNS} FROM mandate_events WHERE mandate_id = $1 ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(mandate_event_from_row)
        .collect()
    }

    async fn mandate_usage(
        &self,
        id: &str,
        period_start: Option<i64>,
    ) -> Result<Usage, StoreError> {
        let row = sqlx::query(USAGE)
            .bind(id)
            .bind(period_start.unwrap_or(i64::MIN))
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|row| usage_from_row(&row, period_start))
            .transpose()?
            .unwrap_or_default())
    }
}
