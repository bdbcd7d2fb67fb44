//! The ledger in SQLite. Each transfer updates its two accounts' totals and inserts its
//! row in the caller's write transaction; the overdraft guard is part of the update's
//! WHERE clause, and a CHECK constraint of the table repeats it.

use super::{corrupt, parse_stored, SqliteStore, SESSION_COLUMNS};
use crate::domain::ids;
use crate::domain::ledger::{
    Account, AccountKind, AccountRef, Book, LedgerError, Transfer, TransferSpec, TransferState,
};
use crate::domain::payers::{Approval, Voucher};
use crate::domain::payments::{Plan, Redemption};
use crate::domain::sessions::SessionRecord;
use crate::store::{HistoryEntry, LedgerStore, PlanOutcome, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

const ACCOUNT_COLUMNS: &str = "id, kind, owner_id, currency, livemode, debits_posted, \
                               credits_posted, debits_pending, credits_pending";
pub(super) const TRANSFER_COLUMNS: &str =
    "id, debit_account, credit_account, amount, currency, livemode, \
     state, kind, session_id, memo, created_at, lapses_at, resolved_at";

fn account_from_row(row: &SqliteRow) -> Result<Account, StoreError> {
    let kind: String = row.try_get("kind")?;
    let currency: String = row.try_get("currency")?;
    Ok(Account {
        id: row.try_get("id")?,
        kind: parse_stored(&kind, "account kind")?,
        owner_id: row.try_get("owner_id")?,
        book: Book::new(currency.parse().map_err(corrupt)?, row.try_get("livemode")?),
        debits_posted: row.try_get("debits_posted")?,
        credits_posted: row.try_get("credits_posted")?,
        debits_pending: row.try_get("debits_pending")?,
        credits_pending: row.try_get("credits_pending")?,
    })
}

pub(super) fn transfer_from_row(row: &SqliteRow) -> Result<Transfer, StoreError> {
    let state: String = row.try_get("state")?;
    let currency: String = row.try_get("currency")?;
    Ok(Transfer {
        id: row.try_get("id")?,
        debit_account: row.try_get("debit_account")?,
        credit_account: row.try_get("credit_account")?,
        amount: row.try_get("amount")?,
        book: Book::new(currency.parse().map_err(corrupt)?, row.try_get("livemode")?),
        state: parse_stored(&state, "transfer state")?,
        kind: parse_stored(&row.try_get::<String, _>("kind")?, "transfer kind")?,
        session_id: row.try_get("session_id")?,
        memo: row.try_get("memo")?,
        created_at: row.try_get("created_at")?,
        lapses_at: row.try_get("lapses_at")?,
        resolved_at: row.try_get("resolved_at")?,
    })
}

pub(super) fn voucher_from_row(row: &SqliteRow) -> Result<Voucher, StoreError> {
    let currency: String = row.try_get("currency")?;
    Ok(Voucher {
        id: row.try_get("id")?,
        code_hash: row.try_get("code_hash")?,
        amount: row.try_get("amount")?,
        book: Book::new(currency.parse().map_err(corrupt)?, row.try_get("livemode")?),
        created_at: row.try_get("created_at")?,
        redeemed_by: row.try_get("redeemed_by")?,
        redeemed_at: row.try_get("redeemed_at")?,
    })
}

/// The account `r` names, opened if it does not exist yet. Accounts are read first: on
/// the hot path they exist, and one statement is cheaper than two.
pub(super) async fn open_account(
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
            .bind(r.book.currency.code().to_string())
            .bind(r.book.livemode)
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
    .bind(r.book.currency.code())
    .bind(r.book.livemode)
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
    transfer_with_id(tx, ids::new_id("tr"), spec, now_ms).await
}

/// [`transfer_in`] under an id chosen beforehand (by a plan).
pub(super) async fn transfer_with_id(
    tx: &mut Transaction<'static, Sqlite>,
    id: String,
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
        id,
        debit_account: debit.id,
        credit_account: credit.id,
        amount: spec.amount,
        book: spec.debit.book,
        state: if spec.hold_until.is_some() {
            TransferState::Pending
        } else {
            TransferState::Posted
        },
        kind: spec.kind,
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
    .bind(transfer.book.currency.code())
    .bind(transfer.book.livemode)
    .bind(transfer.state.as_str())
    .bind(transfer.kind.as_str())
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
        let columns = &*super::TRANSFER_COLUMNS_T;
        let rows = sqlx::query(&format!(
            "SELECT {columns}, \
                    CASE WHEN w.id = t.credit_account THEN 1 ELSE -1 END AS direction, \
                    m.name AS merchant_name, s.description AS description, \
                    s.mandate_id AS mandate_id \
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
                    mandate_id: row.try_get("mandate_id")?,
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
            .bind(v.book.currency.code())
            .bind(v.book.livemode)
            .bind(v.created_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn apply_plan_answering(
        &self,
        plan: &Plan,
        answer: Option<&crate::domain::ports::IdempotencyCompletion>,
    ) -> Result<PlanOutcome<SessionRecord>, StoreError> {
        self.group_write(|done| super::WriteJob::Plan {
            plan: plan.clone(),
            answer: answer.cloned().map(Box::new),
            done,
        })
        .await
    }

    async fn apply_plans(&self, plans: &[Plan]) -> Result<usize, StoreError> {
        if plans.is_empty() {
            return Ok(0);
        }
        let mut tx = self.write().await?;
        let mut applied = Vec::new();
        for plan in plans {
            if let PlanOutcome::Applied(session) = super::plans::apply_in(&mut tx, plan).await? {
                applied.push(session.id);
            }
        }
        tx.commit().await?;
        for id in &applied {
            self.changed(id);
        }
        Ok(applied.len())
    }

    async fn hold_of(&self, session_id: &str) -> Result<Option<Transfer>, StoreError> {
        let columns = &*super::TRANSFER_COLUMNS_T;
        sqlx::query(&format!(
            "SELECT {columns} FROM sessions s JOIN transfers t ON t.id = s.hold_transfer_id \
             WHERE s.id = ?"
        ))
        .bind(session_id)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(transfer_from_row)
        .transpose()
    }

    async fn due_holds(
        &self,
        now_ms: i64,
        batch: i64,
    ) -> Result<Vec<(Transfer, Option<SessionRecord>)>, StoreError> {
        let holds = super::plans::due_holds(&self.reader, now_ms, batch).await?;
        // The sessions they hold for, in one read rather than one each.
        let ids: Vec<&String> = holds.iter().filter_map(|(_, id)| id.as_ref()).collect();
        let mut sessions = std::collections::HashMap::new();
        if !ids.is_empty() {
            let marks = vec!["?"; ids.len()].join(", ");
            let sql = format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id IN ({marks})");
            let mut query = sqlx::query(&sql);
            for id in &ids {
                query = query.bind(*id);
            }
            for row in query.fetch_all(&self.reader).await? {
                let session = super::session_from_row(&row)?;
                sessions.insert(session.id.clone(), session);
            }
        }
        Ok(holds
            .into_iter()
            .map(|(hold, held)| {
                let session = held.and_then(|id| sessions.remove(&id));
                (hold, session)
            })
            .collect())
    }

    async fn find_voucher(&self, code_hash: &str) -> Result<Option<Voucher>, StoreError> {
        sqlx::query(
            "SELECT id, code_hash, amount, currency, livemode, created_at, redeemed_by, redeemed_at \
             FROM vouchers WHERE code_hash = ?",
        )
        .bind(code_hash)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(voucher_from_row)
        .transpose()
    }

    async fn apply_redemption(
        &self,
        redemption: &Redemption,
    ) -> Result<PlanOutcome<Voucher>, StoreError> {
        let mut tx = self.write().await?;
        let outcome = super::plans::redeem_in(&mut tx, redemption).await?;
        tx.commit().await?;
        Ok(outcome)
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
                method: parse_stored(&method, "approval method")?,
                evidence: row.try_get("evidence")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }
}
