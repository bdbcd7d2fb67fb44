//! Plans of the domain (`crate::domain::payments`) written to PostgreSQL: the
//! precondition is checked by the statements that write, so a plan made from an
//! earlier read, on this instance or another, is written only if that read still holds.

use super::ledger::{locked_account, open_account, resolve_in, transfer_with_id};
use super::{insert_event, mandates, payers};
use crate::domain::ledger::TransferSpec;
use crate::domain::payers::Voucher;
use crate::domain::payments::{LedgerStep, Plan, Precondition, Redemption};
use crate::domain::sessions::SessionRecord;
use crate::store::rows::*;
use crate::store::{PlanOutcome, StoreError};
use sqlx::postgres::PgConnection;

/// Writes `plan` in the caller's transaction if its precondition holds. The session's
/// row is written first, guarded by the precondition, so that a stale plan writes
/// nothing; an error after it leaves the write to be rolled back.
pub(super) async fn apply_in(
    db: &mut PgConnection,
    plan: &Plan,
) -> Result<PlanOutcome<SessionRecord>, StoreError> {
    if let Precondition::Pending {
        auto_approvals: Some(cap),
        ..
    } = &plan.precondition
    {
        // The payer's row is locked first: two instances approving for one payer at
        // once count one after the other, never both under the cap.
        sqlx::query("SELECT 1 FROM payers WHERE id = $1 FOR NO KEY UPDATE")
            .bind(&cap.payer_id)
            .execute(&mut *db)
            .await?;
        let used: i64 = sqlx::query_scalar(payers::AUTO_APPROVALS_SINCE)
            .bind(&cap.payer_id)
            .bind(cap.since_ms)
            .bind(&cap.merchant_id)
            .bind(cap.livemode)
            .fetch_one(&mut *db)
            .await?;
        if used >= cap.limit {
            return stale(db, &plan.session_id).await;
        }
    }
    if let Precondition::Pending {
        mandate: Some(budget),
        ..
    } = &plan.precondition
    {
        if !mandates::budget_holds(db, budget).await? {
            return stale(db, &plan.session_id).await;
        }
    }
    let change = &plan.change;
    // $10 is the guard's value, bound only where the guard has one.
    let (guard, number, hold) = match &plan.precondition {
        Precondition::Pending {
            unexpired_at: Some(at),
            ..
        } => ("status = 'pending' AND expires_at > $10", Some(*at), None),
        Precondition::Pending {
            unexpired_at: None, ..
        } => ("status = 'pending'", None, None),
        Precondition::Held { hold_transfer_id } => (
            "capture_status = 'held' AND hold_transfer_id = $10",
            None,
            Some(hold_transfer_id.as_str()),
        ),
        Precondition::Refundable { amount } => {
            (REFUNDABLE_GUARD_POSTGRES.as_str(), Some(*amount), None)
        }
    };
    let sql = format!(
        "UPDATE sessions SET status = $1, capture_status = $2, \
             expires_at = COALESCE($3, expires_at), updated_at = $4, \
             mandate_id = COALESCE($6, mandate_id), \
             mandate_period = COALESCE($7, mandate_period), \
             amount_captured = COALESCE($8, amount_captured), \
             amount_refunded = amount_refunded + COALESCE($9, 0), \
             refund_count = refund_count + CASE WHEN $9 IS NULL THEN 0 ELSE 1 END \
         WHERE id = $5 AND {guard} RETURNING {SESSION_COLUMNS}"
    );
    let mut update = sqlx::query(&sql)
        .bind(change.status.as_str())
        .bind(change.capture_status.map(|c| c.as_str()))
        .bind(change.expires_at)
        .bind(change.updated_at)
        .bind(&plan.session_id)
        .bind(&change.mandate_id)
        .bind(change.mandate_period)
        .bind(change.amount_captured)
        .bind(change.refunded);
    if let Some(number) = number {
        update = update.bind(number);
    }
    if let Some(hold) = hold {
        update = update.bind(hold);
    }
    let Some(row) = update.fetch_optional(&mut *db).await? else {
        return stale(db, &plan.session_id).await;
    };
    let session = session_from_row(&row)?;
    // The rest of the session's change first, the money last (see `transfer_with_id`).
    if let Some(spend) = &plan.mandate_spend {
        mandates::spend_in(db, spend).await?;
    }
    insert_event(db, &plan.event).await?;
    if let Some(approval) = &plan.approval {
        sqlx::query(&format!(
            "INSERT INTO approvals ({APPROVAL_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
        ))
        .bind(&approval.session_id)
        .bind(&approval.payer_id)
        .bind(approval.method.as_str())
        .bind(&approval.evidence)
        .bind(approval.created_at)
        .execute(&mut *db)
        .await?;
    }
    let at = change.updated_at;
    for step in &plan.ledger {
        match step {
            LedgerStep::Transfer { id, spec } => {
                transfer_with_id(db, id.clone(), spec, at).await?;
            }
            LedgerStep::CoverShortfall { id, spec } => {
                // Measured under the lock of both accounts (in the order every transfer
                // from the sandbox takes them): two charges at once cover each their own.
                let source = open_account(db, &spec.debit, at).await?;
                locked_account(db, &source.id).await?;
                let account = open_account(db, &spec.credit, at).await?;
                let account = locked_account(db, &account.id).await?;
                let short = spec.amount - account.available();
                if short > 0 {
                    let cover = TransferSpec {
                        amount: short,
                        ..spec.clone()
                    };
                    transfer_with_id(db, id.clone(), &cover, at).await?;
                }
            }
            LedgerStep::Resolve { transfer_id, to } => {
                resolve_in(db, transfer_id, *to, at).await?;
            }
        }
    }
    // Kept once its transfer exists: the row refers to it.
    if let Some(refund) = &plan.refund {
        sqlx::query(&format!(
            "INSERT INTO refunds ({REFUND_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)"
        ))
        .bind(&refund.id)
        .bind(&refund.session_id)
        .bind(refund.amount)
        .bind(refund.currency.code())
        .bind(refund.reason.map(|r| r.as_str()))
        .bind(&refund.transfer_id)
        .bind(refund.created_at)
        .execute(&mut *db)
        .await?;
    }
    // Linked once the hold exists: the column refers to the transfer.
    if let Some(hold) = &change.hold_transfer_id {
        sqlx::query("UPDATE sessions SET hold_transfer_id = $1 WHERE id = $2")
            .bind(hold)
            .bind(&plan.session_id)
            .execute(&mut *db)
            .await?;
    }
    Ok(PlanOutcome::Applied(session))
}

/// The session as it now is, for a plan whose precondition no longer holds.
async fn stale(
    db: &mut PgConnection,
    session_id: &str,
) -> Result<PlanOutcome<SessionRecord>, StoreError> {
    let current = sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
    ))
    .bind(session_id)
    .fetch_optional(db)
    .await?;
    Ok(match current {
        Some(row) => PlanOutcome::Stale(session_from_row(&row)?),
        None => PlanOutcome::NotFound,
    })
}

/// Writes a voucher's redemption in the caller's transaction if the voucher is still
/// unused.
pub(super) async fn redeem_in(
    db: &mut PgConnection,
    redemption: &Redemption,
) -> Result<PlanOutcome<Voucher>, StoreError> {
    let redeemed = sqlx::query(&format!(
        "UPDATE vouchers SET redeemed_by = $1, redeemed_at = $2 \
         WHERE id = $3 AND redeemed_by IS NULL RETURNING {VOUCHER_COLUMNS}"
    ))
    .bind(&redemption.payer_id)
    .bind(redemption.at)
    .bind(&redemption.voucher_id)
    .fetch_optional(&mut *db)
    .await?;
    let Some(row) = redeemed else {
        let current = sqlx::query(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE id = $1"
        ))
        .bind(&redemption.voucher_id)
        .fetch_optional(&mut *db)
        .await?;
        return Ok(match current {
            Some(row) => PlanOutcome::Stale(voucher_from_row(&row)?),
            None => PlanOutcome::NotFound,
        });
    };
    let voucher = voucher_from_row(&row)?;
    transfer_with_id(
        db,
        redemption.transfer_id.clone(),
        &redemption.credit,
        redemption.at,
    )
    .await?;
    Ok(PlanOutcome::Applied(voucher))
}
