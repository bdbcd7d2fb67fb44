//! The ledger in SQLite. Each transfer updates its two accounts' totals and inserts its
//! row in the writer's transaction; the overdraft guard is part of the update's
//! WHERE clause, and a CHECK constraint of the table repeats it.

use super::{corrupt, SqliteStore, SESSION_COLUMNS};
use crate::domain::ids;
use crate::domain::ledger::{
    Account, AccountKind, AccountRef, LedgerError, Transfer, TransferSpec, TransferState,
};
use crate::domain::payers::{Approval, Voucher};
use crate::domain::payments::{Plan, Redemption};
use crate::domain::sessions::SessionRecord;
use crate::store::rows::*;
use crate::store::{HistoryEntry, LedgerStore, PlanOutcome, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection, OptionalExtension};
use sqlx::Row;

/// The account `r` names, opened if it does not exist yet. Accounts are read first: on
/// the hot path they exist, and one statement is cheaper than two.
pub(super) fn open_account(
    db: &Connection,
    r: &AccountRef,
    now_ms: i64,
) -> Result<Account, StoreError> {
    let find = format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts \
         WHERE kind = ? AND owner_id = ? AND currency = ? AND livemode = ?"
    );
    let key = params![
        r.kind.as_str(),
        r.owner_id,
        r.book.currency.code(),
        r.book.livemode
    ];
    let mut lookup = db.prepare_cached(&find)?;
    if let Some(found) = lookup
        .query_row(key, |row| Ok(account_from_row(row)))
        .optional()?
    {
        return found;
    }
    db.prepare_cached(
        "INSERT OR IGNORE INTO accounts (id, kind, owner_id, currency, livemode, no_overdraft, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )?
    .execute(params![
        ids::new_id("acct"),
        r.kind.as_str(),
        r.owner_id,
        r.book.currency.code(),
        r.book.livemode,
        !r.kind.may_overdraw(),
        now_ms,
    ])?;
    lookup.query_row(key, |row| Ok(account_from_row(row)))?
}

/// Applies a transfer in the writer's transaction: both accounts' totals and the
/// transfer's row.
pub(super) fn transfer_in(
    db: &Connection,
    spec: &TransferSpec,
    now_ms: i64,
) -> Result<Transfer, StoreError> {
    transfer_with_id(db, ids::new_id("tr"), spec, now_ms)
}

/// Adds `amount` to `column` of the account `r` names, within the overdraft guard if
/// `guarded`: one statement, the account's id; `None` when the account does not exist
/// yet or the guard refused.
fn add_to(
    db: &Connection,
    r: &AccountRef,
    column: &str,
    amount: i64,
    guarded: bool,
) -> Result<Option<String>, StoreError> {
    let guard = if guarded {
        " AND credits_posted - debits_posted - debits_pending >= ?1"
    } else {
        ""
    };
    Ok(db
        .prepare_cached(&format!(
            "UPDATE accounts SET {column} = {column} + ?1 \
             WHERE kind = ?2 AND owner_id = ?3 AND currency = ?4 AND livemode = ?5{guard} \
             RETURNING id"
        ))?
        .query_row(
            params![
                amount,
                r.kind.as_str(),
                r.owner_id,
                r.book.currency.code(),
                r.book.livemode
            ],
            |row| row.get(0),
        )
        .optional()?)
}

/// [`transfer_in`] under an id chosen beforehand (by a plan). On the hot path both
/// accounts exist and each takes one statement.
pub(super) fn transfer_with_id(
    db: &Connection,
    id: String,
    spec: &TransferSpec,
    now_ms: i64,
) -> Result<Transfer, StoreError> {
    spec.check()?;
    let (debit_column, credit_column) = match spec.hold_until {
        Some(_) => ("debits_pending", "credits_pending"),
        None => ("debits_posted", "credits_posted"),
    };
    let guarded = !spec.debit.kind.may_overdraw();
    let debit_account = match add_to(db, &spec.debit, debit_column, spec.amount, guarded)? {
        Some(id) => id,
        // A new account, or one that cannot cover the amount.
        None => {
            let debit = open_account(db, &spec.debit, now_ms)?;
            add_to(db, &spec.debit, debit_column, spec.amount, guarded)?.ok_or(
                LedgerError::InsufficientFunds {
                    available: debit.available(),
                    needed: spec.amount,
                },
            )?
        }
    };
    let credit_account = match add_to(db, &spec.credit, credit_column, spec.amount, false)? {
        Some(id) => id,
        None => {
            open_account(db, &spec.credit, now_ms)?;
            add_to(db, &spec.credit, credit_column, spec.amount, false)?
                .ok_or_else(|| corrupt("an account just opened is missing"))?
        }
    };
    let transfer = Transfer {
        id,
        debit_account,
        credit_account,
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
    db.prepare_cached(&format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    ))?
    .execute(params![
        transfer.id,
        transfer.debit_account,
        transfer.credit_account,
        transfer.amount,
        transfer.book.currency.code(),
        transfer.book.livemode,
        transfer.state.as_str(),
        transfer.kind.as_str(),
        transfer.session_id,
        transfer.memo,
        transfer.created_at,
        transfer.lapses_at,
        transfer.resolved_at,
    ])?;
    Ok(transfer)
}

/// Moves a pending transfer to `to` in the writer's transaction, releasing or posting
/// its amounts.
pub(super) fn resolve_in(
    db: &Connection,
    transfer_id: &str,
    to: TransferState,
    now_ms: i64,
) -> Result<Transfer, StoreError> {
    if to == TransferState::Pending {
        return Err(LedgerError::NotPending.into());
    }
    let resolved = db
        .prepare_cached(&format!(
            "UPDATE transfers SET state = ?, resolved_at = ? WHERE id = ? AND state = 'pending' \
             RETURNING {TRANSFER_COLUMNS}"
        ))?
        .query_row(params![to.as_str(), now_ms, transfer_id], |row| {
            Ok(transfer_from_row(row))
        })
        .optional()?;
    let Some(transfer) = resolved.transpose()? else {
        let exists = db
            .prepare_cached("SELECT 1 FROM transfers WHERE id = ?")?
            .exists([transfer_id])?;
        return Err(if exists {
            LedgerError::NotPending
        } else {
            LedgerError::NotFound
        }
        .into());
    };
    let posted = to == TransferState::Posted;
    let (debit_add, credit_add) = if posted {
        (
            "debits_posted = debits_posted + ?1,",
            "credits_posted = credits_posted + ?1,",
        )
    } else {
        ("", "")
    };
    db.prepare_cached(&format!(
        "UPDATE accounts SET {debit_add} debits_pending = debits_pending - ?1 WHERE id = ?2"
    ))?
    .execute(params![transfer.amount, transfer.debit_account])?;
    db.prepare_cached(&format!(
        "UPDATE accounts SET {credit_add} credits_pending = credits_pending - ?1 WHERE id = ?2"
    ))?
    .execute(params![transfer.amount, transfer.credit_account])?;
    Ok(transfer)
}

/// The transfer holding a session's funds.
static HOLD_OF: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "SELECT {} FROM sessions s JOIN transfers t ON t.id = s.hold_transfer_id WHERE s.id = ?",
        *super::TRANSFER_COLUMNS_T
    )
});

#[async_trait]
impl LedgerStore for SqliteStore {
    async fn transfer(&self, spec: &TransferSpec, now_ms: i64) -> Result<Transfer, StoreError> {
        let spec = spec.clone();
        self.writer
            .run(move |db| transfer_in(db, &spec, now_ms))
            .await
    }

    async fn resolve_transfer(
        &self,
        transfer_id: &str,
        to: TransferState,
        now_ms: i64,
    ) -> Result<Transfer, StoreError> {
        let transfer_id = transfer_id.to_string();
        self.writer
            .run(move |db| resolve_in(db, &transfer_id, to, now_ms))
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
        let vouchers = vouchers.to_vec();
        self.writer
            .run(move |db| {
                let mut insert = db.prepare_cached(
                    "INSERT INTO vouchers (id, code_hash, amount, currency, livemode, created_at) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )?;
                for v in &vouchers {
                    insert.execute(params![
                        v.id,
                        v.code_hash,
                        v.amount,
                        v.book.currency.code(),
                        v.book.livemode,
                        v.created_at,
                    ])?;
                }
                Ok(())
            })
            .await
    }

    async fn apply_plan_answering(
        &self,
        plan: &Plan,
        answer: Option<&crate::domain::ports::IdempotencyCompletion>,
    ) -> Result<PlanOutcome<SessionRecord>, StoreError> {
        let (plan, answer) = (plan.clone(), answer.cloned());
        let outcome = self
            .writer
            .run(move |db| {
                let outcome = super::plans::apply_in(db, &plan)?;
                if let (PlanOutcome::Applied(_), Some(answer)) = (&outcome, &answer) {
                    super::idempotency::complete_in(db, answer)?;
                }
                Ok(outcome)
            })
            .await?;
        if let PlanOutcome::Applied(session) = &outcome {
            self.changed(&session.id);
        }
        Ok(outcome)
    }

    async fn apply_plans(&self, plans: &[Plan]) -> Result<usize, StoreError> {
        if plans.is_empty() {
            return Ok(0);
        }
        let plans = plans.to_vec();
        let applied = self
            .writer
            .run(move |db| {
                let mut applied = Vec::new();
                for plan in &plans {
                    if let PlanOutcome::Applied(session) = super::plans::apply_in(db, plan)? {
                        applied.push(session.id);
                    }
                }
                Ok(applied)
            })
            .await?;
        for id in &applied {
            self.changed(id);
        }
        Ok(applied.len())
    }

    async fn hold_of(&self, session_id: &str) -> Result<Option<Transfer>, StoreError> {
        let sql = &*HOLD_OF;
        if let Some(read) =
            self.read_now(|now| now.row(sql, [session_id], |r| transfer_from_row(r)))
        {
            return read;
        }
        sqlx::query(sql)
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
        sqlx::query(&format!(
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE code_hash = ?"
        ))
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
        let redemption = redemption.clone();
        self.writer
            .run(move |db| super::plans::redeem_in(db, &redemption))
            .await
    }

    async fn approval_of(&self, session_id: &str) -> Result<Option<Approval>, StoreError> {
        sqlx::query(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE session_id = ?"
        ))
        .bind(session_id)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(approval_from_row)
        .transpose()
    }
}
