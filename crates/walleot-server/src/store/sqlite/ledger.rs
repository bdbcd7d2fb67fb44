//! The ledger in SQLite. Each transfer updates its two accounts' totals and inserts its
//! row in the caller's write transaction; the overdraft guard is part of the update's
//! WHERE clause, and a CHECK constraint of the table repeats it.

use super::{corrupt, insert_event, session_from_row, SqliteStore, SESSION_COLUMNS};
use crate::domain::ids;
use crate::domain::ledger::TransferKind;
use crate::domain::ledger::{
    Account, AccountKind, AccountRef, LedgerError, Transfer, TransferSpec, TransferState,
};
use crate::domain::payers::{Approval, ApprovalMethod, Voucher};
use crate::domain::sessions::SessionEvent;
use crate::store::{
    HistoryEntry, LedgerStore, PayOutcome, RedeemOutcome, SessionPayment, StoreError,
};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};
use walleot_api::{CaptureMethod, SessionStatus};

const ACCOUNT_COLUMNS: &str = "id, kind, owner_id, currency, livemode, debits_posted, \
                               credits_posted, debits_pending, credits_pending";
const TRANSFER_COLUMNS: &str = "id, debit_account, credit_account, amount, currency, livemode, \
                                state, kind, session_id, memo, created_at, lapses_at, resolved_at";

fn account_from_row(row: &SqliteRow) -> Result<Account, StoreError> {
    let kind: String = row.try_get("kind")?;
    let currency: String = row.try_get("currency")?;
    Ok(Account {
        id: row.try_get("id")?,
        kind: AccountKind::parse(&kind).ok_or_else(|| corrupt(format!("account kind {kind}")))?,
        owner_id: row.try_get("owner_id")?,
        currency: currency.parse().map_err(corrupt)?,
        livemode: row.try_get("livemode")?,
        debits_posted: row.try_get("debits_posted")?,
        credits_posted: row.try_get("credits_posted")?,
        debits_pending: row.try_get("debits_pending")?,
        credits_pending: row.try_get("credits_pending")?,
    })
}

fn transfer_from_row(row: &SqliteRow) -> Result<Transfer, StoreError> {
    let state: String = row.try_get("state")?;
    let currency: String = row.try_get("currency")?;
    Ok(Transfer {
        id: row.try_get("id")?,
        debit_account: row.try_get("debit_account")?,
        credit_account: row.try_get("credit_account")?,
        amount: row.try_get("amount")?,
        currency: currency.parse().map_err(corrupt)?,
        livemode: row.try_get("livemode")?,
        state: TransferState::parse(&state)
            .ok_or_else(|| corrupt(format!("transfer state {state}")))?,
        kind: row.try_get("kind")?,
        session_id: row.try_get("session_id")?,
        memo: row.try_get("memo")?,
        created_at: row.try_get("created_at")?,
        lapses_at: row.try_get("lapses_at")?,
        resolved_at: row.try_get("resolved_at")?,
    })
}

fn voucher_from_row(row: &SqliteRow) -> Result<Voucher, StoreError> {
    let currency: String = row.try_get("currency")?;
    Ok(Voucher {
        id: row.try_get("id")?,
        code_hash: row.try_get("code_hash")?,
        amount: row.try_get("amount")?,
        currency: currency.parse().map_err(corrupt)?,
        livemode: row.try_get("livemode")?,
        created_at: row.try_get("created_at")?,
        redeemed_by: row.try_get("redeemed_by")?,
        redeemed_at: row.try_get("redeemed_at")?,
    })
}

/// The account `r` names, opened if it does not exist yet. Accounts are read first: on
/// the hot path they exist, and one statement is cheaper than two.
async fn open_account(
    tx: &mut Transaction<'static, Sqlite>,
    r: &AccountRef,
    now_ms: i64,
) -> Result<Account, StoreError> {
    let find = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts \
         WHERE kind = ? AND owner_id = ? AND currency = ? AND livemode = ?"
    );
    let lookup = || {
        sqlx::query(&find)
            .bind(r.kind.as_str())
            .bind(r.owner_id.clone())
            .bind(r.currency.code().to_string())
            .bind(r.livemode)
    };
    if let Some(row) = lookup().fetch_optional(&mut **tx).await? {
        return account_from_row(&row);
    }
    sqlx::query(
        "INSERT OR IGNORE INTO accounts (id, kind, owner_id, currency, livemode, no_overdraft, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(ids::new_id("acct"))
    .bind(r.kind.as_str())
    .bind(&r.owner_id)
    .bind(r.currency.code())
    .bind(r.livemode)
    .bind(!r.kind.may_overdraw())
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let row = lookup().fetch_one(&mut **tx).await?;
    account_from_row(&row)
}

/// Applies a transfer inside `tx`: both accounts' totals and the transfer's row.
pub(super) async fn transfer_in(
    tx: &mut Transaction<'static, Sqlite>,
    spec: &TransferSpec,
    now_ms: i64,
) -> Result<Transfer, StoreError> {
    spec.check()?;
    let debit = open_account(tx, &spec.debit, now_ms).await?;
    let credit = open_account(tx, &spec.credit, now_ms).await?;
    let (debit_column, credit_column) = match spec.hold_until {
        Some(_) => ("debits_pending", "credits_pending"),
        None => ("debits_posted", "credits_posted"),
    };
    let guard = if spec.debit.kind.may_overdraw() {
        ""
    } else {
        " AND credits_posted - debits_posted - debits_pending >= ?2"
    };
    let debited = sqlx::query(&format!(
        "UPDATE accounts SET {debit_column} = {debit_column} + ?2 WHERE id = ?1{guard}"
    ))
    .bind(&debit.id)
    .bind(spec.amount)
    .execute(&mut **tx)
    .await?;
    if debited.rows_affected() != 1 {
        return Err(LedgerError::InsufficientFunds {
            available: debit.available(),
            needed: spec.amount,
        }
        .into());
    }
    sqlx::query(&format!(
        "UPDATE accounts SET {credit_column} = {credit_column} + ? WHERE id = ?"
    ))
    .bind(spec.amount)
    .bind(&credit.id)
    .execute(&mut **tx)
    .await?;
    let transfer = Transfer {
        id: ids::new_id("tr"),
        debit_account: debit.id,
        credit_account: credit.id,
        amount: spec.amount,
        currency: spec.debit.currency,
        livemode: spec.debit.livemode,
        state: if spec.hold_until.is_some() {
            TransferState::Pending
        } else {
            TransferState::Posted
        },
        kind: spec.kind.as_str().to_string(),
        session_id: spec.session_id.clone(),
        memo: spec.memo.clone(),
        created_at: now_ms,
        lapses_at: spec.hold_until,
        resolved_at: None,
    };
    sqlx::query(&format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))
    .bind(&transfer.id)
    .bind(&transfer.debit_account)
    .bind(&transfer.credit_account)
    .bind(transfer.amount)
    .bind(transfer.currency.code())
    .bind(transfer.livemode)
    .bind(transfer.state.as_str())
    .bind(&transfer.kind)
    .bind(&transfer.session_id)
    .bind(&transfer.memo)
    .bind(transfer.created_at)
    .bind(transfer.lapses_at)
    .bind(transfer.resolved_at)
    .execute(&mut **tx)
    .await?;
    Ok(transfer)
}

/// Moves a pending transfer to `to` inside `tx`, releasing or posting its amounts.
pub(super) async fn resolve_in(
    tx: &mut Transaction<'static, Sqlite>,
    transfer_id: &str,
    to: TransferState,
    now_ms: i64,
) -> Result<Transfer, StoreError> {
    if to == TransferState::Pending {
        return Err(LedgerError::NotPending.into());
    }
    let row = sqlx::query(&format!(
        "UPDATE transfers SET state = ?, resolved_at = ? WHERE id = ? AND state = 'pending' \
         RETURNING {TRANSFER_COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(now_ms)
    .bind(transfer_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM transfers WHERE id = ?")
            .bind(transfer_id)
            .fetch_optional(&mut **tx)
            .await?;
        return Err(match exists {
            Some(_) => LedgerError::NotPending,
            None => LedgerError::NotFound,
        }
        .into());
    };
    let transfer = transfer_from_row(&row)?;
    let posted = to == TransferState::Posted;
    let (debit_add, credit_add) = if posted {
        (
            "debits_posted = debits_posted + ?1,",
            "credits_posted = credits_posted + ?1,",
        )
    } else {
        ("", "")
    };
    sqlx::query(&format!(
        "UPDATE accounts SET {debit_add} debits_pending = debits_pending - ?1 WHERE id = ?2"
    ))
    .bind(transfer.amount)
    .bind(&transfer.debit_account)
    .execute(&mut **tx)
    .await?;
    sqlx::query(&format!(
        "UPDATE accounts SET {credit_add} credits_pending = credits_pending - ?1 WHERE id = ?2"
    ))
    .bind(transfer.amount)
    .bind(&transfer.credit_account)
    .execute(&mut **tx)
    .await?;
    Ok(transfer)
}

/// The span of the limit on payments without a second factor.
const HOUR_MS: i64 = 3600 * 1000;

/// Charges the payer's wallet for a pending session inside `tx`: the transfer, the
/// status change, its event and the approval. An error leaves `tx` to be rolled back.
pub(super) async fn pay_session_in(
    tx: &mut Transaction<'static, Sqlite>,
    payment: &SessionPayment,
    now_ms: i64,
) -> Result<PayOutcome, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
    ))
    .bind(&payment.session_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(row) = row else {
        return Ok(PayOutcome::NotFound);
    };
    let session = session_from_row(&row)?;
    if session.status_at(now_ms) != SessionStatus::Pending {
        return Ok(PayOutcome::Refused(session));
    }
    if let Some(limit) = payment.auto_limit_per_hour {
        let used: i64 = sqlx::query_scalar(super::payers::AUTO_APPROVALS_SINCE)
            .bind(&payment.payer_id)
            .bind(now_ms - HOUR_MS)
            .bind(&session.merchant_id)
            .bind(session.livemode)
            .fetch_one(&mut **tx)
            .await?;
        if used >= limit {
            return Ok(PayOutcome::AutoLimitReached);
        }
    }
    let spec = TransferSpec {
        debit: AccountRef::wallet(&payment.payer_id, session.currency, session.livemode),
        credit: AccountRef::merchant(&session.merchant_id, session.currency, session.livemode),
        amount: session.amount,
        kind: TransferKind::Charge,
        session_id: Some(session.id.clone()),
        memo: None,
        hold_until: (session.capture_method == CaptureMethod::Manual)
            .then_some(now_ms + payment.hold_ms),
    };
    if payment.fund_from_sandbox && !session.livemode {
        let wallet = open_account(tx, &spec.debit, now_ms).await?;
        let short = session.amount - wallet.available();
        if short > 0 {
            let top_up = TransferSpec {
                debit: AccountRef::sandbox(session.currency),
                credit: spec.debit.clone(),
                amount: short,
                kind: TransferKind::SandboxCredit,
                session_id: None,
                memo: Some("sandbox payer top-up".into()),
                hold_until: None,
            };
            transfer_in(tx, &top_up, now_ms).await?;
        }
    }
    // An error here drops the transaction: nothing of the payment is written.
    let transfer = transfer_in(tx, &spec, now_ms).await?;
    let held = transfer.state == TransferState::Pending;
    let paid = sqlx::query(&format!(
        "UPDATE sessions SET status = 'paid', updated_at = ?, \
                 capture_status = CASE WHEN ? THEN 'held' ELSE NULL END, \
                 hold_transfer_id = CASE WHEN ? THEN ? ELSE NULL END \
             WHERE id = ? AND status = 'pending' RETURNING {SESSION_COLUMNS}"
    ))
    .bind(now_ms)
    .bind(held)
    .bind(held)
    .bind(&transfer.id)
    .bind(&session.id)
    .fetch_one(&mut **tx)
    .await?;
    let paid = session_from_row(&paid)?;
    let event = SessionEvent::new(
        &session.id,
        Some(SessionStatus::Pending),
        SessionStatus::Paid,
        now_ms,
    );
    insert_event(tx, &event).await?;
    sqlx::query(
            "INSERT INTO approvals (session_id, payer_id, method, evidence, created_at) VALUES (?, ?, ?, ?, ?)",
        )
        .bind(&session.id)
        .bind(&payment.payer_id)
        .bind(payment.method.as_str())
        .bind(&payment.evidence)
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    Ok(PayOutcome::Paid(paid))
}

/// Lapses a pending hold inside `tx`: the money goes back to the payer and, when it
/// held a session's funds, that session expires with its event. Returns the session.
pub(super) async fn lapse_in(
    tx: &mut Transaction<'static, Sqlite>,
    transfer_id: &str,
    now_ms: i64,
) -> Result<Option<String>, StoreError> {
    let lapsed = resolve_in(tx, transfer_id, TransferState::Lapsed, now_ms).await?;
    let Some(session_id) = lapsed.session_id else {
        return Ok(None);
    };
    // A hold that lapses uncaptured gives the money back; the session expires.
    let released = sqlx::query(
        "UPDATE sessions SET status = 'expired', capture_status = 'released', updated_at = ? \
         WHERE id = ? AND hold_transfer_id = ? AND capture_status = 'held'",
    )
    .bind(now_ms)
    .bind(&session_id)
    .bind(transfer_id)
    .execute(&mut **tx)
    .await?;
    if released.rows_affected() != 1 {
        return Ok(None);
    }
    let event = SessionEvent::named(
        &session_id,
        "session.released",
        Some(SessionStatus::Paid),
        SessionStatus::Expired,
        now_ms,
    );
    insert_event(tx, &event).await?;
    Ok(Some(session_id))
}

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn transfer(&self, spec: &TransferSpec, now_ms: i64) -> Result<Transfer, StoreError> {
        let mut tx = self.write().await?;
        let transfer = transfer_in(&mut tx, spec, now_ms).await?;
        tx.commit().await?;
        Ok(transfer)
    }

    async fn resolve_transfer(
        &self,
        transfer_id: &str,
        to: TransferState,
        now_ms: i64,
    ) -> Result<Transfer, StoreError> {
        let mut tx = self.write().await?;
        let transfer = resolve_in(&mut tx, transfer_id, to, now_ms).await?;
        tx.commit().await?;
        Ok(transfer)
    }

    async fn lapse_due(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError> {
        let mut tx = self.write().await?;
        let due: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM transfers WHERE state = 'pending' AND lapses_at <= ? ORDER BY lapses_at LIMIT ?",
        )
        .bind(now_ms)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        let mut released_sessions = Vec::new();
        for id in &due {
            if let Some(session_id) = lapse_in(&mut tx, id, now_ms).await? {
                released_sessions.push(session_id);
            }
        }
        tx.commit().await?;
        for id in &released_sessions {
            self.changed(id);
        }
        Ok(due.len())
    }

    async fn lapse_hold_if_due(&self, session_id: &str, now_ms: i64) -> Result<bool, StoreError> {
        const DUE: &str =
            "SELECT t.id FROM sessions s JOIN transfers t ON t.id = s.hold_transfer_id \
                           WHERE s.id = ? AND s.capture_status = 'held' AND t.state = 'pending' \
                             AND t.lapses_at <= ?";
        // Read first: the hold of a session that is read is rarely due.
        let due: Option<String> = sqlx::query_scalar(DUE)
            .bind(session_id)
            .bind(now_ms)
            .fetch_optional(&self.reader)
            .await?;
        if due.is_none() {
            return Ok(false);
        }
        let mut tx = self.write().await?;
        let due: Option<String> = sqlx::query_scalar(DUE)
            .bind(session_id)
            .bind(now_ms)
            .fetch_optional(&mut *tx)
            .await?;
        let lapsed = match due {
            Some(hold) => lapse_in(&mut tx, &hold, now_ms).await?.is_some(),
            None => false,
        };
        tx.commit().await?;
        if lapsed {
            self.changed(session_id);
        }
        Ok(lapsed)
    }

    async fn pay_session(
        &self,
        payment: &SessionPayment,
        now_ms: i64,
    ) -> Result<PayOutcome, StoreError> {
        self.group_write(|done| super::WriteJob::Payment {
            payment: payment.clone(),
            now_ms,
            done,
        })
        .await
    }

    async fn accounts_of(
        &self,
        kind: AccountKind,
        owner_id: &str,
    ) -> Result<Vec<Account>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE kind = ? AND owner_id = ? ORDER BY livemode DESC, currency"
        ))
        .bind(kind.as_str())
        .bind(owner_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(account_from_row)
        .collect()
    }

    async fn ledger_snapshot(&self) -> Result<(Vec<Account>, Vec<Transfer>), StoreError> {
        // One read transaction: WAL gives it a single snapshot, so totals and transfers agree.
        let mut tx = self.reader.begin().await?;
        let accounts = sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY id"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(account_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        let transfers = sqlx::query(&format!(
            "SELECT {TRANSFER_COLUMNS} FROM transfers ORDER BY seq"
        ))
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(transfer_from_row)
        .collect::<Result<Vec<_>, _>>()?;
        tx.commit().await?;
        Ok((accounts, transfers))
    }

    async fn wallet_history(
        &self,
        payer_id: &str,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        let columns = TRANSFER_COLUMNS
            .split(',')
            .map(|c| format!("t.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
        let rows = sqlx::query(&format!(
            "SELECT {columns}, \
                    CASE WHEN w.id = t.credit_account THEN 1 ELSE -1 END AS direction, \
                    m.name AS merchant_name, s.description AS description \
             FROM accounts w \
             JOIN transfers t ON t.debit_account = w.id OR t.credit_account = w.id \
             LEFT JOIN sessions s ON s.id = t.session_id \
             LEFT JOIN merchants m ON m.id = s.merchant_id \
             WHERE w.kind = 'wallet' AND w.owner_id = ? \
             ORDER BY t.seq DESC LIMIT ?"
        ))
        .bind(payer_id)
        .bind(limit)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let transfer = transfer_from_row(row)?;
                let direction: i64 = row.try_get("direction")?;
                Ok(HistoryEntry {
                    signed_amount: direction * transfer.amount,
                    transfer,
                    merchant_name: row.try_get("merchant_name")?,
                    description: row.try_get("description")?,
                })
            })
            .collect()
    }

    async fn insert_vouchers(&self, vouchers: &[Voucher]) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        for v in vouchers {
            sqlx::query(
                "INSERT INTO vouchers (id, code_hash, amount, currency, livemode, created_at) VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&v.id)
            .bind(&v.code_hash)
            .bind(v.amount)
            .bind(v.currency.code())
            .bind(v.livemode)
            .bind(v.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn redeem_voucher(
        &self,
        code_hash: &str,
        payer_id: &str,
        now_ms: i64,
    ) -> Result<RedeemOutcome, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "UPDATE vouchers SET redeemed_by = ?, redeemed_at = ? WHERE code_hash = ? AND redeemed_by IS NULL \
             RETURNING id, code_hash, amount, currency, livemode, created_at, redeemed_by, redeemed_at",
        )
        .bind(payer_id)
        .bind(now_ms)
        .bind(code_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            let exists: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM vouchers WHERE code_hash = ?")
                    .bind(code_hash)
                    .fetch_optional(&mut *tx)
                    .await?;
            return Ok(match exists {
                Some(_) => RedeemOutcome::AlreadyRedeemed,
                None => RedeemOutcome::Unknown,
            });
        };
        let voucher = voucher_from_row(&row)?;
        let spec = TransferSpec {
            debit: AccountRef::vouchers(voucher.currency, voucher.livemode),
            credit: AccountRef::wallet(payer_id, voucher.currency, voucher.livemode),
            amount: voucher.amount,
            kind: TransferKind::Voucher,
            session_id: None,
            memo: Some(format!("voucher {}", voucher.id)),
            hold_until: None,
        };
        transfer_in(&mut tx, &spec, now_ms).await?;
        tx.commit().await?;
        Ok(RedeemOutcome::Redeemed(voucher))
    }

    async fn approval_of(&self, session_id: &str) -> Result<Option<Approval>, StoreError> {
        let row = sqlx::query(
            "SELECT session_id, payer_id, method, evidence, created_at FROM approvals WHERE session_id = ?",
        )
        .bind(session_id)
        .fetch_optional(&self.reader)
        .await?;
        row.map(|row| {
            let method: String = row.try_get("method")?;
            Ok(Approval {
                session_id: row.try_get("session_id")?,
                payer_id: row.try_get("payer_id")?,
                method: ApprovalMethod::parse(&method)
                    .ok_or_else(|| corrupt(format!("approval method {method}")))?,
                evidence: row.try_get("evidence")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }
}
