//! Plans of the domain (`crate::domain::payments`) written to SQLite: the precondition is
//! checked by the statements that write, so a plan made from an earlier read is
//! written only if that read still holds.

use super::ledger::{
    open_account, resolve_in, transfer_from_row, transfer_with_id, voucher_from_row,
};
use super::{insert_event, session_from_row, SESSION_COLUMNS};
use crate::domain::ledger::{Transfer, TransferSpec};
use crate::domain::payers::Voucher;
use crate::domain::payments::{LedgerStep, Plan, Precondition, Redemption};
use crate::domain::sessions::SessionRecord;
use crate::store::{PlanOutcome, StoreError};
use sqlx::{Row, Sqlite, Transaction};

/// Writes `plan` inside `tx` if its precondition holds. The session's row is written
/// first, guarded by the precondition, so that a stale plan writes nothing; an error
/// after it leaves `tx` to be rolled back.
pub(super) async fn apply_in(
    tx: &mut Transaction<'static, Sqlite>,
    plan: &Plan,
) -> Result<PlanOutcome<SessionRecord>, StoreError> {
    if let Precondition::Pending {
        auto_approvals: Some(cap),
        ..
    } = &plan.precondition
    {
        let used: i64 = sqlx::query_scalar(super::payers::AUTO_APPROVALS_SINCE)
            .bind(&cap.payer_id)
            .bind(cap.since_ms)
            .bind(&cap.merchant_id)
            .bind(cap.livemode)
            .fetch_one(&mut **tx)
            .await?;
        if used >= cap.limit {
            return stale(tx, &plan.session_id).await;
        }
    }
    if let Precondition::Pending {
        mandate: Some(budget),
        ..
    } = &plan.precondition
    {
        if !super::mandates::budget_holds(tx, budget).await? {
            return stale(tx, &plan.session_id).await;
        }
    }
    let change = &plan.change;
    let guard = match &plan.precondition {
        Precondition::Pending {
            unexpired_at: Some(_),
            ..
        } => "status = 'pending' AND expires_at > ?6",
        Precondition::Pending {
            unexpired_at: None, ..
        } => "status = 'pending'",
        Precondition::Held { .. } => "capture_status = 'held' AND hold_transfer_id = ?6",
    };
    let sql = format!(
        "UPDATE sessions SET status = ?1, capture_status = ?2, \
             expires_at = COALESCE(?3, expires_at), updated_at = ?4, \
             mandate_id = COALESCE(?7, mandate_id), \
             mandate_period = COALESCE(?8, mandate_period) \
         WHERE id = ?5 AND {guard} RETURNING {SESSION_COLUMNS}"
    );
    let query = sqlx::query(&sql)
        .bind(change.status.as_str())
        .bind(change.capture_status.map(|c| c.as_str()))
        .bind(change.expires_at)
        .bind(change.updated_at)
        .bind(&plan.session_id);
    let query = match &plan.precondition {
        Precondition::Pending {
            unexpired_at: Some(at),
            ..
        } => query.bind(*at),
        Precondition::Pending {
            unexpired_at: None, ..
        } => query,
        Precondition::Held { hold_transfer_id } => query.bind(hold_transfer_id),
    };
    // ?6 is the guard's; where the guard binds none, it is bound unused.
    let query = match &plan.precondition {
        Precondition::Pending {
            unexpired_at: None, ..
        } => query.bind(None::<i64>),
        _ => query,
    };
    let query = query.bind(&change.mandate_id).bind(change.mandate_period);
    let Some(row) = query.fetch_optional(&mut **tx).await? else {
        return stale(tx, &plan.session_id).await;
    };
    let session = session_from_row(&row)?;
    let at = change.updated_at;
    for step in &plan.ledger {
        match step {
            LedgerStep::Transfer { id, spec } => {
                transfer_with_id(tx, id.clone(), spec, at).await?;
            }
            LedgerStep::CoverShortfall { id, spec } => {
                let account = open_account(tx, &spec.credit, at).await?;
                let short = spec.amount - account.available();
                if short > 0 {
                    let cover = TransferSpec {
                        amount: short,
                        ..spec.clone()
                    };
                    transfer_with_id(tx, id.clone(), &cover, at).await?;
                }
            }
            LedgerStep::Resolve { transfer_id, to } => {
                resolve_in(tx, transfer_id, *to, at).await?;
            }
        }
    }
    // Linked once the hold exists: the column refers to the transfer.
    if let Some(hold) = &change.hold_transfer_id {
        sqlx::query("UPDATE sessions SET hold_transfer_id = ? WHERE id = ?")
            .bind(hold)
            .bind(&plan.session_id)
            .execute(&mut **tx)
            .await?;
    }
    if let Some(spend) = &plan.mandate_spend {
        super::mandates::spend_in(tx, spend).await?;
    }
    insert_event(tx, &plan.event).await?;
    if let Some(approval) = &plan.approval {
        sqlx::query(
            "INSERT INTO approvals (session_id, payer_id, method, evidence, created_at) \
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&approval.session_id)
        .bind(&approval.payer_id)
        .bind(approval.method.as_str())
        .bind(&approval.evidence)
        .bind(approval.created_at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(PlanOutcome::Applied(session))
}

/// The session as it now is, for a plan whose precondition no longer holds.
async fn stale(
    tx: &mut Transaction<'static, Sqlite>,
    session_id: &str,
) -> Result<PlanOutcome<SessionRecord>, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
    ))
    .bind(session_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match row {
        Some(row) => PlanOutcome::Stale(session_from_row(&row)?),
        None => PlanOutcome::NotFound,
    })
}

/// Writes a voucher's redemption inside `tx` if the voucher is still unused.
pub(super) async fn redeem_in(
    tx: &mut Transaction<'static, Sqlite>,
    redemption: &Redemption,
) -> Result<PlanOutcome<Voucher>, StoreError> {
    const COLUMNS: &str =
        "id, code_hash, amount, currency, livemode, created_at, redeemed_by, redeemed_at";
    let row = sqlx::query(&format!(
        "UPDATE vouchers SET redeemed_by = ?, redeemed_at = ? \
         WHERE id = ? AND redeemed_by IS NULL RETURNING {COLUMNS}"
    ))
    .bind(&redemption.payer_id)
    .bind(redemption.at)
    .bind(&redemption.voucher_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        let current = sqlx::query(&format!("SELECT {COLUMNS} FROM vouchers WHERE id = ?"))
            .bind(&redemption.voucher_id)
            .fetch_optional(&mut **tx)
            .await?;
        return Ok(match current {
            Some(row) => PlanOutcome::Stale(voucher_from_row(&row)?),
            None => PlanOutcome::NotFound,
        });
    };
    let voucher = voucher_from_row(&row)?;
    transfer_with_id(
        tx,
        redemption.transfer_id.clone(),
        &redemption.credit,
        redemption.at,
    )
    .await?;
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
