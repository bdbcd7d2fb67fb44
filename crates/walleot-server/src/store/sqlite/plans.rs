//! Plans of the domain (`crate::domain::payments`) written to SQLite by the writer: the
//! precondition is checked by the statements that write, so a plan made from an
//! earlier read is written only if that read still holds.

use super::ledger::{open_account, resolve_in, transfer_with_id};
use super::{insert_event, session_from_row, SESSION_COLUMNS};
use super::{transfer_from_row, voucher_from_row, VOUCHER_COLUMNS};
use crate::domain::ledger::{Transfer, TransferSpec};
use crate::domain::payers::Voucher;
use crate::domain::payments::{LedgerStep, Plan, Precondition, Redemption};
use crate::domain::sessions::SessionRecord;
use crate::store::rows::{REFUNDABLE_GUARD_SQLITE, REFUND_COLUMNS};
use crate::store::{PlanOutcome, StoreError};
use rusqlite::types::Value;
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::Row;

/// Writes `plan` in the writer's transaction if its precondition holds. The session's
/// row is written first, guarded by the precondition, so that a stale plan writes
/// nothing; an error after it leaves the write to be rolled back.
pub(super) fn apply_in(
    db: &Connection,
    plan: &Plan,
) -> Result<PlanOutcome<SessionRecord>, StoreError> {
    if let Precondition::Pending {
        auto_approvals: Some(cap),
        ..
    } = &plan.precondition
    {
        let used: i64 = db
            .prepare_cached(super::payers::AUTO_APPROVALS_SINCE)?
            .query_row(
                params![cap.payer_id, cap.since_ms, cap.merchant_id, cap.livemode],
                |row| row.get(0),
            )?;
        if used >= cap.limit {
            return stale(db, &plan.session_id);
        }
    }
    if let Precondition::Pending {
        mandate: Some(budget),
        ..
    } = &plan.precondition
    {
        if !super::mandates::budget_holds(db, budget)? {
            return stale(db, &plan.session_id);
        }
    }
    let change = &plan.change;
    // ?6 is the guard's value; where the guard needs none, it is bound unused.
    let (guard, guarded) = match &plan.precondition {
        Precondition::Pending {
            unexpired_at: Some(at),
            ..
        } => (
            "status = 'pending' AND expires_at > ?6",
            Value::Integer(*at),
        ),
        Precondition::Pending {
            unexpired_at: None, ..
        } => ("status = 'pending'", Value::Null),
        Precondition::Held { hold_transfer_id } => (
            "capture_status = 'held' AND hold_transfer_id = ?6",
            Value::Text(hold_transfer_id.clone()),
        ),
        Precondition::Refundable { amount } => {
            (REFUNDABLE_GUARD_SQLITE.as_str(), Value::Integer(*amount))
        }
    };
    let sql = format!(
        "UPDATE sessions SET status = ?1, capture_status = ?2, \
             expires_at = COALESCE(?3, expires_at), updated_at = ?4, \
             mandate_id = COALESCE(?7, mandate_id), \
             mandate_period = COALESCE(?8, mandate_period), \
             amount_captured = COALESCE(?9, amount_captured), \
             amount_refunded = amount_refunded + COALESCE(?10, 0), \
             refund_count = refund_count + (?10 IS NOT NULL) \
         WHERE id = ?5 AND {guard} RETURNING {SESSION_COLUMNS}"
    );
    let changed = db
        .prepare_cached(&sql)?
        .query_row(
            params![
                change.status.as_str(),
                change.capture_status.map(|c| c.as_str()),
                change.expires_at,
                change.updated_at,
                plan.session_id,
                guarded,
                change.mandate_id,
                change.mandate_period,
                change.amount_captured,
                change.refunded,
            ],
            |row| Ok(session_from_row(row)),
        )
        .optional()?;
    let Some(session) = changed.transpose()? else {
        return stale(db, &plan.session_id);
    };
    let at = change.updated_at;
    for step in &plan.ledger {
        match step {
            LedgerStep::Transfer { id, spec } => {
                transfer_with_id(db, id.clone(), spec, at)?;
            }
            LedgerStep::CoverShortfall { id, spec } => {
                let account = open_account(db, &spec.credit, at)?;
                let short = spec.amount - account.available();
                if short > 0 {
                    let cover = TransferSpec {
                        amount: short,
                        ..spec.clone()
                    };
                    transfer_with_id(db, id.clone(), &cover, at)?;
                }
            }
            LedgerStep::Resolve { transfer_id, to } => {
                resolve_in(db, transfer_id, *to, at)?;
            }
        }
    }
    // Linked once the hold exists: the column refers to the transfer.
    if let Some(hold) = &change.hold_transfer_id {
        db.prepare_cached("UPDATE sessions SET hold_transfer_id = ? WHERE id = ?")?
            .execute(params![hold, plan.session_id])?;
    }
    if let Some(spend) = &plan.mandate_spend {
        super::mandates::spend_in(db, spend)?;
    }
    insert_event(db, &plan.event)?;
    if let Some(refund) = &plan.refund {
        db.prepare_cached(&format!(
            "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))?
        .execute(params![
            refund.id,
            refund.session_id,
            refund.amount,
            refund.currency.code(),
            refund.reason.map(|r| r.as_str()),
            refund.transfer_id,
            refund.created_at,
        ])?;
    }
    if let Some(approval) = &plan.approval {
        db.prepare_cached(
            "INSERT INTO approvals (session_id, payer_id, method, evidence, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )?
        .execute(params![
            approval.session_id,
            approval.payer_id,
            approval.method.as_str(),
            approval.evidence,
            approval.created_at,
        ])?;
    }
    Ok(PlanOutcome::Applied(session))
}

/// The session as it now is, for a plan whose precondition no longer holds.
fn stale(db: &Connection, session_id: &str) -> Result<PlanOutcome<SessionRecord>, StoreError> {
    let current = db
        .prepare_cached(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
        ))?
        .query_row([session_id], |row| Ok(session_from_row(row)))
        .optional()?;
    Ok(match current.transpose()? {
        Some(session) => PlanOutcome::Stale(session),
        None => PlanOutcome::NotFound,
    })
}

/// Writes a voucher's redemption in the writer's transaction if the voucher is still
/// unused.
pub(super) fn redeem_in(
    db: &Connection,
    redemption: &Redemption,
) -> Result<PlanOutcome<Voucher>, StoreError> {
    let redeemed = db
        .prepare_cached(&format!(
            "UPDATE vouchers SET redeemed_by = ?, redeemed_at = ? \
             WHERE id = ? AND redeemed_by IS NULL RETURNING {VOUCHER_COLUMNS}"
        ))?
        .query_row(
            params![redemption.payer_id, redemption.at, redemption.voucher_id],
            |row| Ok(voucher_from_row(row)),
        )
        .optional()?;
    let Some(voucher) = redeemed.transpose()? else {
        let current = db
            .prepare_cached(&format!(
                "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE id = ?"
            ))?
            .query_row([&redemption.voucher_id], |row| Ok(voucher_from_row(row)))
            .optional()?;
        return Ok(match current.transpose()? {
            Some(voucher) => PlanOutcome::Stale(voucher),
            None => PlanOutcome::NotFound,
        });
    };
    transfer_with_id(
        db,
        redemption.transfer_id.clone(),
        &redemption.credit,
        redemption.at,
    )?;
    Ok(PlanOutcome::Applied(voucher))
}

/// Pending transfers past their deadline, each with the id of the session whose funds
/// it holds, if any.
pub(super) async fn due_holds(
    reader: &sqlx::SqlitePool,
    now_ms: i64,
    batch: i64,
) -> Result<Vec<(Transfer, Option<String>)>, StoreError> {
    let columns = &*super::TRANSFER_COLUMNS_T;
    let rows = sqlx::query(&format!(
        "SELECT {columns}, s.id AS held_session FROM transfers t LEFT JOIN sessions s \
           ON s.id = t.session_id AND s.hold_transfer_id = t.id AND s.capture_status = 'held' \
         WHERE t.state = 'pending' AND t.lapses_at <= ? ORDER BY t.lapses_at LIMIT ?"
    ))
    .bind(now_ms)
    .bind(batch)
    .fetch_all(reader)
    .await?;
    rows.iter()
        .map(|row| Ok((transfer_from_row(row)?, row.try_get("held_session")?)))
        .collect()
}
