//! What the service keeps of the ledger: accounts, transfers, payments of sessions,
//! vouchers and approvals.

use super::StoreError;
use crate::domain::ledger::{Account, AccountKind, Transfer, TransferSpec, TransferState};
use crate::domain::payers::{Approval, Voucher};
use crate::domain::payments::{Plan, Redemption};
use crate::domain::sessions::SessionRecord;
use async_trait::async_trait;

/// A line of a wallet's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub transfer: Transfer,
    /// Positive for money in, negative for money out of the wallet.
    pub signed_amount: i64,
    pub merchant_name: Option<String>,
    pub description: Option<String>,
    /// The mandate the charge was made under, without a click.
    pub mandate_id: Option<String>,
}

/// The store's answer to a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanOutcome<T> {
    /// The precondition held and everything was written: the record as it now is.
    Applied(T),
    /// The precondition no longer held and nothing was written: the record as it is.
    Stale(T),
    NotFound,
}

#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// Makes a transfer (posted, or pending when `hold_until` is set), opening the
    /// accounts it names if needed. Refuses with [`LedgerError`] and writes nothing when
    /// a wallet would be overdrawn.
    async fn transfer(&self, spec: &TransferSpec, now_ms: i64) -> Result<Transfer, StoreError>;
    /// Posts, voids or lapses a pending transfer, once.
    async fn resolve_transfer(
        &self,
        transfer_id: &str,
        to: TransferState,
        now_ms: i64,
    ) -> Result<Transfer, StoreError>;
    async fn accounts_of(
        &self,
        kind: AccountKind,
        owner_id: &str,
    ) -> Result<Vec<Account>, StoreError>;
    /// Every account and every transfer, read in one consistent snapshot.
    async fn ledger_snapshot(&self) -> Result<(Vec<Account>, Vec<Transfer>), StoreError>;
    /// The newest transfers in or out of a payer's wallets.
    async fn wallet_history(
        &self,
        payer_id: &str,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>, StoreError>;
    async fn insert_vouchers(&self, vouchers: &[Voucher]) -> Result<(), StoreError>;
    async fn approval_of(&self, session_id: &str) -> Result<Option<Approval>, StoreError>;

    /// Writes a plan atomically if its precondition still holds: its transfers, the
    /// session's change, event and approval. A transfer that breaks a rule of the
    /// ledger (a wallet overdrawn) fails with [`LedgerError`] and writes nothing.
    async fn apply_plan(&self, plan: &Plan) -> Result<PlanOutcome<SessionRecord>, StoreError> {
        self.apply_plan_answering(plan, None).await
    }
    /// [`Self::apply_plan`], keeping in the same transaction, when the plan is applied,
    /// the answer to the request that asked for it (see
    /// `IdempotencyStore::complete_idempotency_key`).
    async fn apply_plan_answering(
        &self,
        plan: &Plan,
        answer: Option<&super::IdempotencyCompletion>,
    ) -> Result<PlanOutcome<SessionRecord>, StoreError>;
    /// Writes the plans whose precondition still holds, in one transaction; skips the
    /// others. Returns how many were written. An error writes none.
    async fn apply_plans(&self, plans: &[Plan]) -> Result<usize, StoreError>;
    /// The transfer a session names as its hold, whatever its state.
    async fn hold_of(&self, session_id: &str) -> Result<Option<Transfer>, StoreError>;
    /// Up to `batch` pending transfers past their deadline, each with the session
    /// whose funds it holds, if any.
    async fn due_holds(
        &self,
        now_ms: i64,
        batch: i64,
    ) -> Result<Vec<(Transfer, Option<SessionRecord>)>, StoreError>;
    async fn find_voucher(&self, code_hash: &str) -> Result<Option<Voucher>, StoreError>;
    /// Writes a redemption if the voucher is still unused: the voucher marked used and
    /// its credit, atomically.
    async fn apply_redemption(
        &self,
        redemption: &Redemption,
    ) -> Result<PlanOutcome<Voucher>, StoreError>;
}
