//! Mandates in SQLite, and the budget check of a payment under one.

use super::{corrupt, parse_stored, SqliteStore};
use crate::domain::mandates::{MandateEvent, MandateLimits, MandateRecord, Usage};
use crate::domain::payments::{MandateBudget, MandateSpend};
use crate::domain::ports::{MandateStore, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use walleot_api::{Currency, MandateStatus};

const MANDATE_COLUMNS: &str = "id, merchant_id, livemode, customer, payer_id, currency, \
                               per_call_limit, period, period_limit, total_limit, granted_with, \
                               created_at, expires_at, revoked_at";

fn mandate_from_row(row: &SqliteRow) -> Result<MandateRecord, StoreError> {
    let currency: String = row.try_get("currency")?;
    let period = row
        .try_get::<Option<String>, _>("period")?
        .map(|p| parse_stored(&p, "mandate period"))
        .transpose()?;
    let period_limit: Option<i64> = row.try_get("period_limit")?;
    let period = match (period, period_limit) {
        (Some(period), Some(limit)) => Some((period, limit)),
        (None, None) => None,
        _ => return Err(corrupt("a mandate period without its limit")),
    };
    let limits = MandateLimits::new(
        row.try_get("per_call_limit")?,
        period,
        row.try_get("total_limit")?,
    )
    .map_err(|e| corrupt(format!("mandate limits: {e}")))?;
    Ok(MandateRecord {
        id: row.try_get("id")?,
        merchant_id: row.try_get("merchant_id")?,
        livemode: row.try_get("livemode")?,
        customer: row.try_get("customer")?,
        payer_id: row.try_get("payer_id")?,
        currency: currency.parse().map_err(corrupt)?,
        limits,
        granted_with: row.try_get("granted_with")?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

/// The names of mandate events, as stored.
fn event_kind(raw: &str) -> Result<&'static str, StoreError> {
    ["mandate.granted", "mandate.revoked", "mandate.expired"]
        .into_iter()
        .find(|known| *known == raw)
        .ok_or_else(|| corrupt(format!("unknown mandate event `{raw}`")))
}

async fn insert_event(
    tx: &mut Transaction<'static, Sqlite>,
    event: &MandateEvent,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO mandate_events (mandate_id, type, from_status, to_status, created_at) \
         VALUES (?, ?, ?, ?, ?)",
    )
    .bind(&event.mandate_id)
    .bind(event.kind)
    .bind(event.from_status.map(MandateStatus::as_str))
    .bind(event.to_status.as_str())
    .bind(event.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Whether a payment of `budget.amount` still fits the mandate, read in the writing
/// transaction: not revoked, not expired, and within its period and total limits.
pub(super) async fn budget_holds(
    tx: &mut Transaction<'static, Sqlite>,
    budget: &MandateBudget,
) -> Result<bool, StoreError> {
    let active: Option<i64> = sqlx::query_scalar(
        "SELECT 1 FROM mandates WHERE id = ? AND revoked_at IS NULL AND expires_at > ?",
    )
    .bind(&budget.mandate_id)
    .bind(budget.now_ms)
    .fetch_optional(&mut **tx)
    .await?;
    if active.is_none() {
        return Ok(false);
    }
    let usage = usage_in(&mut **tx, &budget.mandate_id, budget.period_start).await?;
    let fits =
        |spent: i64, limit: Option<i64>| limit.is_none_or(|max| spent + budget.amount <= max);
    Ok(fits(usage.in_period, budget.period_limit) && fits(usage.total, budget.total_limit))
}

/// Adds a payment to (or gives one back from) the mandate's counters, in the plan's
/// transaction.
pub(super) async fn spend_in(
    tx: &mut Transaction<'static, Sqlite>,
    spend: &MandateSpend,
) -> Result<(), StoreError> {
    sqlx::query("UPDATE mandates SET spent_total = spent_total + ? WHERE id = ?")
        .bind(spend.amount)
        .bind(&spend.mandate_id)
        .execute(&mut **tx)
        .await?;
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
    sqlx::query(sql)
        .bind(&spend.mandate_id)
        .bind(start)
        .bind(spend.amount)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// What was spent under a mandate, from its counters: two reads of one row each.
async fn usage_in<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    mandate_id: &str,
    period_start: Option<i64>,
) -> Result<Usage, StoreError> {
    let row = sqlx::query(
        "SELECT m.spent_total AS total, \
                COALESCE((SELECT spent FROM mandate_spending \
                          WHERE mandate_id = m.id AND period_start = ?2), 0) AS in_period \
         FROM mandates m WHERE m.id = ?1",
    )
    .bind(mandate_id)
    .bind(period_start.unwrap_or(i64::MIN))
    .fetch_optional(db)
    .await?;
    let Some(row) = row else {
        return Ok(Usage::default());
    };
    Ok(Usage {
        in_period: if period_start.is_some() {
            row.try_get("in_period")?
        } else {
            0
        },
        total: row.try_get("total")?,
    })
}

#[async_trait]
impl MandateStore for SqliteStore {
    async fn insert_mandate(
        &self,
        mandate: &MandateRecord,
        granted: &MandateEvent,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        let limits = &mandate.limits;
        sqlx::query(
            "INSERT INTO mandates (id, merchant_id, livemode, customer, payer_id, currency, \
                                   per_call_limit, period, period_limit, total_limit, \
                                   granted_with, created_at, expires_at) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
        tx.commit().await?;
        Ok(())
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
        let mut tx = self.write().await?;
        let changed = sqlx::query(&format!(
            "UPDATE mandates SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL \
             RETURNING {MANDATE_COLUMNS}"
        ))
        .bind(revoked.created_at)
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        let row = match changed {
            Some(row) => {
                insert_event(&mut tx, revoked).await?;
                row
            }
            None => {
                sqlx::query(&format!(
                    "SELECT {MANDATE_COLUMNS} FROM mandates WHERE id = ?"
                ))
                .bind(id)
                .fetch_one(&mut *tx)
                .await?
            }
        };
        let mandate = mandate_from_row(&row)?;
        tx.commit().await?;
        Ok(mandate)
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
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO mandate_events (mandate_id, type, from_status, to_status, created_at) \
             SELECT m.id, 'mandate.expired', 'active', 'expired', m.expires_at FROM mandates m \
             WHERE m.revoked_at IS NULL AND m.expires_at <= ?1 \
               AND NOT EXISTS (SELECT 1 FROM mandate_events e \
                               WHERE e.mandate_id = m.id AND e.type = 'mandate.expired') \
             ORDER BY m.expires_at LIMIT ?2",
        )
        .bind(now_ms)
        .bind(batch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() as usize)
    }

    async fn mandate_events(&self, id: &str) -> Result<Vec<MandateEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT type, from_status, to_status, created_at FROM mandate_events \
             WHERE mandate_id = ? ORDER BY seq",
        )
        .bind(id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let kind: String = row.try_get("type")?;
                let status = |raw: String| parse_stored::<MandateStatus>(&raw, "mandate status");
                Ok(MandateEvent {
                    mandate_id: id.to_string(),
                    kind: event_kind(&kind)?,
                    from_status: row
                        .try_get::<Option<String>, _>("from_status")?
                        .map(status)
                        .transpose()?,
                    to_status: status(row.try_get("to_status")?)?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }

    async fn mandate_usage(
        &self,
        id: &str,
        period_start: Option<i64>,
    ) -> Result<Usage, StoreError> {
        usage_in(&self.reader, id, period_start).await
    }
}
