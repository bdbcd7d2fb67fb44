//! Mandates in SQLite, and the budget check of a payment under one.

use super::SqliteStore;
use crate::domain::mandates::{MandateEvent, MandateRecord, Usage};
use crate::domain::payments::{MandateBudget, MandateSpend};
use crate::domain::ports::{MandateStore, StoreError};
use crate::store::rows::*;
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use walleot_api::{Currency, MandateStatus};

fn insert_event(db: &Connection, event: &MandateEvent) -> Result<(), StoreError> {
    db.prepare_cached(
        "INSERT INTO mandate_events (id, mandate_id, type, from_status, to_status, created_at) \
         VALUES (?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        event.id,
        event.mandate_id,
        event.kind,
        event.from_status.map(MandateStatus::as_str),
        event.to_status.as_str(),
        event.created_at,
    ])?;
    Ok(())
}

/// Whether a payment of `budget.amount` still fits the mandate, read in the writer's
/// transaction: not revoked, not expired, and within its period and total limits.
pub(super) fn budget_holds(db: &Connection, budget: &MandateBudget) -> Result<bool, StoreError> {
    let active = db
        .prepare_cached(
            "SELECT 1 FROM mandates WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
        )?
        .exists(params![budget.mandate_id, budget.now_ms])?;
    if !active {
        return Ok(false);
    }
    let usage = db
        .prepare_cached(USAGE)?
        .query_row(
            params![budget.mandate_id, budget.period_start.unwrap_or(i64::MIN)],
            |row| Ok(usage_from_row(row, budget.period_start)),
        )
        .optional()?
        .transpose()?
        .unwrap_or_default();
    let fits =
        |spent: i64, limit: Option<i64>| limit.is_none_or(|max| spent + budget.amount <= max);
    Ok(fits(usage.in_period, budget.period_limit) && fits(usage.total, budget.total_limit))
}

/// Adds a payment to (or gives one back from) the mandate's counters, in the plan's
/// write.
pub(super) fn spend_in(db: &Connection, spend: &MandateSpend) -> Result<(), StoreError> {
    db.prepare_cached("UPDATE mandates SET spent_total = spent_total + ? WHERE id = ?")?
        .execute(params![spend.amount, spend.mandate_id])?;
    let Some(start) = spend.period_start else {
        return Ok(());
    };
    // A give-back finds the row its payment made (the insert's CHECK would refuse a
    // negative first value before the conflict is seen).
    let sql = if spend.amount >= 0 {
        "INSERT INTO mandate_spending (mandate_id, period_start, spent) VALUES (?1, ?2, ?3) \
         ON CONFLICT (mandate_id, period_start) DO UPDATE SET spent = spent + ?3"
    } else {
        "UPDATE mandate_spending SET spent = spent + ?3 WHERE mandate_id = ?1 AND period_start = ?2"
    };
    db.prepare_cached(sql)?
        .execute(params![spend.mandate_id, start, spend.amount])?;
    Ok(())
}

/// What was spent under a mandate, from its counters: one row, read in the writer's
/// transaction by [`budget_holds`] and through the pool by `mandate_usage`. `?1` is the
/// mandate, `?2` the start of its period (`i64::MIN` without one).
const USAGE: &str = "SELECT m.spent_total AS total, \
                            COALESCE((SELECT spent FROM mandate_spending \
                                      WHERE mandate_id = m.id AND period_start = ?2), 0) AS in_period \
                     FROM mandates m WHERE m.id = ?1";

#[async_trait]
impl MandateStore for SqliteStore {
    async fn insert_mandate(
        &self,
        mandate: &MandateRecord,
        granted: &MandateEvent,
    ) -> Result<(), StoreError> {
        let (mandate, granted) = (mandate.clone(), granted.clone());
        self.writer
            .run(move |db| {
                let limits = &mandate.limits;
                db.prepare_cached(
                    "INSERT INTO mandates (id, merchant_id, livemode, customer, payer_id, currency, \
                                           per_call_limit, period, period_limit, total_limit, \
                                           granted_with, created_at, expires_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    mandate.id,
                    mandate.merchant_id,
                    mandate.livemode,
                    mandate.customer,
                    mandate.payer_id,
                    mandate.currency.code(),
                    limits.per_call,
                    limits.period.map(|(p, _)| p.as_str()),
                    limits.period.map(|(_, max)| max),
                    limits.total,
                    mandate.granted_with,
                    mandate.created_at,
                    mandate.expires_at,
                ])?;
                insert_event(db, &granted)
            })
            .await
    }

    async fn find_mandate(&self, id: &str) -> Result<Option<MandateRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MANDATE_COLUMNS} FROM mandates WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
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
        let (id, revoked) = (id.to_owned(), revoked.clone());
        self.writer
            .run(move |db| {
                let changed = db
                    .prepare_cached(&format!(
                        "UPDATE mandates SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL \
                         RETURNING {MANDATE_COLUMNS}"
                    ))?
                    .query_row(params![revoked.created_at, id], |row| {
                        Ok(mandate_from_row(row))
                    })
                    .optional()?
                    .transpose()?;
                match changed {
                    Some(mandate) => {
                        insert_event(db, &revoked)?;
                        Ok(mandate)
                    }
                    None => db
                        .prepare_cached(&format!(
                            "SELECT {MANDATE_COLUMNS} FROM mandates WHERE id = ?"
                        ))?
                        .query_row([id], |row| Ok(mandate_from_row(row)))?,
                }
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
             WHERE merchant_id = ? AND livemode = ? AND customer = ? AND currency = ? \
             ORDER BY seq DESC LIMIT 20"
        ))
        .bind(merchant_id)
        .bind(livemode)
        .bind(customer)
        .bind(currency.code())
        .fetch_all(&self.reader)
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
            "SELECT seq FROM mandates WHERE id = ? AND merchant_id = ? AND livemode = ?",
        )
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&self.reader)
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
        let status_filter = match status {
            None => "1 = 1",
            Some(MandateStatus::Active) => "revoked_at IS NULL AND expires_at > ?5",
            Some(MandateStatus::Revoked) => "revoked_at IS NOT NULL",
            Some(MandateStatus::Expired) => "revoked_at IS NULL AND expires_at <= ?5",
        };
        let rows = sqlx::query(&format!(
            "SELECT {MANDATE_COLUMNS} FROM mandates \
             WHERE merchant_id = ?1 AND livemode = ?2 AND seq < ?3 \
               AND (?4 IS NULL OR customer = ?4) AND {status_filter} \
             ORDER BY seq DESC LIMIT ?6"
        ))
        .bind(merchant_id)
        .bind(livemode)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(customer)
        .bind(now_ms)
        .bind(limit + 1)
        .fetch_all(&self.reader)
        .await?;
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
            "SELECT {MANDATE_COLUMNS} FROM mandates WHERE payer_id = ? ORDER BY seq DESC"
        ))
        .bind(payer_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(mandate_from_row)
        .collect()
    }

    async fn record_mandate_expiries(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError> {
        self.writer
            .run(move |db| {
                Ok(db
                    .prepare_cached(
                        "INSERT INTO mandate_events (id, mandate_id, type, from_status, to_status, created_at) \
                         SELECT 'evt_' || lower(hex(randomblob(12))), m.id, 'mandate.expired', 'active', 'expired', ?1 FROM mandates m \
                         WHERE m.revoked_at IS NULL AND m.expires_at <= ?1 \
                           AND NOT EXISTS (SELECT 1 FROM mandate_events e \
                                           WHERE e.mandate_id = m.id AND e.type = 'mandate.expired') \
                         ORDER BY m.expires_at LIMIT ?2",
                    )?
                    .execute(params![now_ms, batch])?)
            })
            .await
    }

    async fn mandate_events(&self, id: &str) -> Result<Vec<MandateEvent>, StoreError> {
        sqlx::query(&format!(
            "SELECT {MANDATE_EVENT_COLUMNS} FROM mandate_events WHERE mandate_id = ? ORDER BY seq"
        ))
        .bind(id)
        .fetch_all(&self.reader)
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
            .fetch_optional(&self.reader)
            .await?;
        Ok(row
            .map(|row| usage_from_row(&row, period_start))
            .transpose()?
            .unwrap_or_default())
    }
}
