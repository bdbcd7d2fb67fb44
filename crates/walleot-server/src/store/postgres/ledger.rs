//! The ledger in PostgreSQL. Each transfer updates its two accounts' totals and inserts
//! its row in the caller's transaction; the overdraft guard is part of the update's
//! WHERE clause (re-checked by PostgreSQL after any wait for the row), and a CHECK
//! constraint of the table repeats it.

use super::{plans, PostgresStore};
use crate::domain::ids;
use crate::domain::ledger::{
    Account, AccountKind, AccountRef, LedgerError, Transfer, TransferSpec, TransferState,
};
use crate::domain::payers::{Approval, Voucher};
use crate::domain::payments::{Plan, Redemption};
use crate::domain::ports::IdempotencyCompletion;
use crate::domain::sessions::SessionRecord;
use crate::store::rows::*;
use crate::store::{HistoryEntry, LedgerStore, PlanOutcome, StoreError};
use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use sqlx::Row;

/// The account `r` names, opened if it does not exist yet (by whichever of two racing
/// transactions inserts first; the other reads it).
pub(super) async fn open_account(
    db: &mut PgConnection,
    r: &AccountRef,
    now_ms: i64,
) -> Result<Account, StoreError> {
    sqlx::query(
        "INSERT INTO accounts (id, kind, owner_id, currency, livemode, no_overdraft, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
    )
    .bind(ids::new_id("acct"))
    .bind(r.kind.as_str())
    .bind(&r.owner_id)
    .bind(r.book.currency.code())
    .bind(r.book.livemode)
    .bind(!r.kind.may_overdraw())
    .bind(now_ms)
    .execute(&mut *db)
    .await?;
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts \
         WHERE kind = $1 AND owner_id = $2 AND currency = $3 AND livemode = $4"
    ))
    .bind(r.kind.as_str())
    .bind(&r.owner_id)
    .bind(r.book.currency.code())
    .bind(r.book.livemode)
    .fetch_one(&mut *db)
    .await?;
    account_from_row(&row)
}

/// The account with this id, as last committed, locked until the transaction ends.
pub(super) async fn locked_account(db: &mut PgConnection, id: &str) -> Result<Account, StoreError> {
    let row = sqlx::query(&format!(
        "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE id = $1 FOR NO KEY UPDATE"
    ))
    .bind(id)
    .fetch_one(db)
    .await?;
    account_from_row(&row)
}

/// Adds `amount` to `column` of the account `r` names, within the overdraft guard if
/// `guarded`: one statement, the account's id; `None` when the account does not exist
/// yet or the guard refused.
async fn add_to(
    db: &mut PgConnection,
    r: &AccountRef,
    column: &str,
    amount: i64,
    guarded: bool,
) -> Result<Option<String>, StoreError> {
    let guard = if guarded {
        " AND credits_posted - debits_posted - debits_pending >= $1"
    } else {
        ""
    };
    Ok(sqlx::query_scalar(&format!(
        "UPDATE accounts SET {column} = {column} + $1 \
         WHERE kind = $2 AND owner_id = $3 AND currency = $4 AND livemode = $5{guard} \
         RETURNING id"
    ))
    .bind(amount)
    .bind(r.kind.as_str())
    .bind(&r.owner_id)
    .bind(r.book.currency.code())
    .bind(r.book.livemode)
    .fetch_optional(db)
    .await?)
}

/// Applies a transfer under an id chosen beforehand (by a plan, or fresh): both
/// accounts' totals and the transfer's row. The credit comes last: a merchant's
/// account takes every payment to the merchant, and its row stays locked from its
/// update to the commit, so that update is left as near the commit as it can be.
pub(super) async fn transfer_with_id(
    db: &mut PgConnection,
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
    let debit_account = match add_to(db, &spec.debit, debit_column, spec.amount, guarded).await? {
        Some(id) => id,
        // A new account, or one that cannot cover the amount.
        None => {
            let debit = open_account(db, &spec.debit, now_ms).await?;
            add_to(db, &spec.debit, debit_column, spec.amount, guarded)
                .await?
                .ok_or(LedgerError::InsufficientFunds {
                    available: debit.available(),
                    needed: spec.amount,
                })?
        }
    };
    let credit_account = sqlx::query_scalar(
        "SELECT id FROM accounts WHERE kind = $1 AND owner_id = $2 AND currency = $3 \
         AND livemode = $4",
    )
    .bind(spec.credit.kind.as_str())
    .bind(&spec.credit.owner_id)
    .bind(spec.credit.book.currency.code())
    .bind(spec.credit.book.livemode)
    .fetch_optional(&mut *db)
    .await?;
    let credit_account: String = match credit_account {
        Some(id) => id,
        None => open_account(db, &spec.credit, now_ms).await?.id,
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
    sqlx::query(&format!(
        "INSERT INTO transfers ({TRANSFER_COLUMNS}) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)"
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
    .execute(&mut *db)
    .await?;
    sqlx::query(&format!(
        "UPDATE accounts SET {credit_column} = {credit_column} + $1 WHERE id = $2"
    ))
    .bind(spec.amount)
    .bind(&transfer.credit_account)
    .execute(db)
    .await?;
    Ok(transfer)
}

/// Moves a pending transfer to `to` in the caller's transaction, releasing or posting
/// its amounts; once, whichever of two racing transactions comes first.
pub(super) async fn resolve_in(
    db: &mut PgConnection,
    transfer_id: &str,
    to: TransferState,
    now_ms: i64,
) -> Result<Transfer, StoreError> {
    if to == TransferState::Pending {
        return Err(LedgerError::NotPending.into());
    }
    let resolved = sqlx::query(&format!(
        "UPDATE transfers SET state = $1, resolved_at = $2 WHERE id = $3 AND state = 'pending' \
         RETURNING {TRANSFER_COLUMNS}"
    ))
    .bind(to.as_str())
    .bind(now_ms)
    .bind(transfer_id)
    .fetch_optional(&mut *db)
    .await?;
    let Some(row) = resolved else {
        let exists = sqlx::query("SELECT 1 FROM transfers WHERE id = $1")
            .bind(transfer_id)
            .fetch_optional(&mut *db)
            .await?
            .is_some();
        return Err(if exists {
            LedgerError::NotPending
        } else {
            LedgerError::NotFound
        }
        .into());
    };
    let transfer = transfer_from_row(&row)?;
    let (debit_add, credit_add) = if to == TransferState::Posted {
        (
            "debits_posted = debits_posted + $1,",
            "credits_posted = credits_posted + $1,",
        )
    } else {
        ("", "")
    };
    sqlx::query(&format!(
        "UPDATE accounts SET {debit_add} debits_pending = debits_pending - $1 WHERE id = $2"
    ))
    .bind(transfer.amount)
    .bind(&transfer.debit_account)
    .execute(&mut *db)
    .await?;
    sqlx::query(&format!(
        "UPDATE accounts SET {credit_add} credits_pending = credits_pending - $1 WHERE id = $2"
    ))
    .bind(transfer.amount)
    .bind(&transfer.credit_account)
    .execute(&mut *db)
    .await?;
    Ok(transfer)
}

#[async_trait]
impl LedgerStore for PostgresStore {
    async fn transfer(&self, spec: &TransferSpec, now_ms: i64) -> Result<Transfer, StoreError> {
        self.write(|mut tx| async move {
            let transfer = transfer_with_id(&mut tx, ids::new_id("tr"), spec, now_ms).await?;
            Ok((tx, transfer))
        })
        .await
    }

    async fn resolve_transfer(
        &self,
        transfer_id: &str,
        to: TransferState,
        now_ms: i64,
    ) -> Result<Transfer, StoreError> {
        self.write(|mut tx| async move {
            let transfer = resolve_in(&mut tx, transfer_id, to, now_ms).await?;
            Ok((tx, transfer))
        })
        .await
    }

    async fn accounts_of(
        &self,
        kind: AccountKind,
        owner_id: &str,
    ) -> Result<Vec<Account>, StoreError> {
        sqlx::query(&format!(
            "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE kind = $1 AND owner_id = $2 \
             ORDER BY livemode DESC, currency"
        ))
        .bind(kind.as_str())
        .bind(owner_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(account_from_row)
        .collect()
    }

    async fn ledger_snapshot(&self) -> Result<(Vec<Account>, Vec<Transfer>), StoreError> {
        // One snapshot for both reads, so that totals and transfers agree.
        let mut tx = self.pool.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .execute(&mut *tx)
            .await?;
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
        let columns = &*TRANSFER_COLUMNS_T;
        let rows = sqlx::query(&format!(
            "SELECT {columns}, \
                    CASE WHEN w.id = t.credit_account THEN 1 ELSE -1 END::BIGINT AS direction, \
                    m.name AS merchant_name, s.description AS description, \
                    s.mandate_id AS mandate_id \
             FROM accounts w \
             JOIN transfers t ON t.debit_account = w.id OR t.credit_account = w.id \
             LEFT JOIN sessions s ON s.id = t.session_id \
             LEFT JOIN merchants m ON m.id = s.merchant_id \
             WHERE w.kind = 'wallet' AND w.owner_id = $1 \
             ORDER BY t.seq DESC LIMIT $2"
        ))
        .bind(payer_id)
        .bind(limit)
        .fetch_all(&self.pool)
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
        self.write(|mut tx| async move {
            for v in vouchers {
                sqlx::query(
                    "INSERT INTO vouchers (id, code_hash, amount, currency, livemode, created_at) \
                     VALUES ($1, $2, $3, $4, $5, $6)",
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
            Ok((tx, ()))
        })
        .await
    }

    async fn apply_plan_answering(
        &self,
        plan: &Plan,
        answer: Option<&IdempotencyCompletion>,
    ) -> Result<PlanOutcome<SessionRecord>, StoreError> {
        let outcome = self
            .write(|mut tx| async move {
                let outcome = plans::apply_in(&mut tx, plan).await?;
                if let (PlanOutcome::Applied(_), Some(answer)) = (&outcome, answer) {
                    super::idempotency::complete_in(&mut tx, answer).await?;
                }
                Ok((tx, outcome))
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
        // One transaction each: a batch would keep every plan's account rows locked
        // while it locks the next plan's, against payments locking them in the other
        // order. Each plan is guarded, so nothing needs them written together.
        let mut applied = 0;
        for plan in plans {
            if let PlanOutcome::Applied(_) = self.apply_plan_answering(plan, None).await? {
                applied += 1;
            }
        }
        Ok(applied)
    }

    async fn hold_of(&self, session_id: &str) -> Result<Option<Transfer>, StoreError> {
        sqlx::query(&format!(
            "SELECT {} FROM sessions s JOIN transfers t ON t.id = s.hold_transfer_id \
             WHERE s.id = $1",
            *TRANSFER_COLUMNS_T
        ))
        .bind(session_id)
        .fetch_optional(&self.pool)
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
        let columns = &*TRANSFER_COLUMNS_T;
        let holds = sqlx::query(&format!(
            "SELECT {columns}, s.id AS held_session FROM transfers t LEFT JOIN sessions s \
               ON s.id = t.session_id AND s.hold_transfer_id = t.id \
              AND s.capture_status = 'held' \
             WHERE t.state = 'pending' AND t.lapses_at <= $1 ORDER BY t.lapses_at, t.id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(batch)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|row| Ok((transfer_from_row(row)?, row.try_get("held_session")?)))
        .collect::<Result<Vec<(Transfer, Option<String>)>, StoreError>>()?;
        // The sessions they hold for, in one read rather than one each.
        let ids: Vec<&str> = holds.iter().filter_map(|(_, id)| id.as_deref()).collect();
        let mut sessions = std::collections::HashMap::new();
        if !ids.is_empty() {
            let rows = sqlx::query(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ANY($1)"
            ))
            .bind(&ids)
            .fetch_all(&self.pool)
            .await?;
            for row in &rows {
                let session = session_from_row(row)?;
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
            "SELECT {VOUCHER_COLUMNS} FROM vouchers WHERE code_hash = $1"
        ))
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(voucher_from_row)
        .transpose()
    }

    async fn apply_redemption(
        &self,
        redemption: &Redemption,
    ) -> Result<PlanOutcome<Voucher>, StoreError> {
        self.write(|mut tx| async move {
            let outcome = plans::redeem_in(&mut tx, redemption).await?;
            Ok((tx, outcome))
        })
        .await
    }

    async fn approval_of(&self, session_id: &str) -> Result<Option<Approval>, StoreError> {
        sqlx::query(&format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE session_id = $1"
        ))
        .bind(session_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(approval_from_row)
        .transpose()
    }
}
