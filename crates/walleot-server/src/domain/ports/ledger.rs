//! What the service keeps of the ledger: accounts, transfers, payments of sessions,
//! vouchers and approvals.

use super::StoreError;
use crate::domain::ledger::{Account, AccountKind, Transfer, TransferSpec, TransferState};
use crate::domain::payers::{Approval, ApprovalMethod, Voucher};
use crate::domain::sessions::SessionRecord;
use async_trait::async_trait;

/// A payer paying a session from their wallet.
#[derive(Debug, Clone)]
pub struct SessionPayment {
    pub session_id: String,
    pub payer_id: String,
    pub method: ApprovalMethod,
    /// What proves the approval (a passkey assertion); kept with it.
    pub evidence: Option<String>,
    /// For manual capture: how long the funds stay held before they lapse back.
    pub hold_ms: i64,
    /// Test mode only: first top the wallet up from sandbox funds by what it lacks, in
    /// the same transaction as the charge, so that concurrent payments cannot spend
    /// each other's top-up (the sandbox payer of the test helpers).
    pub fund_from_sandbox: bool,
    /// For payments without a second factor: at most this many such approvals of the
    /// payer for the session's merchant and mode within the past hour, this one
    /// included, counted in the payment's own transaction. Beyond it nothing moves and
    /// the answer is [`PayOutcome::AutoLimitReached`].
    pub auto_limit_per_hour: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayOutcome {
    /// The wallet was charged, the session is paid and the approval recorded.
    Paid(SessionRecord),
    /// The session is not payable (not pending, or expired); nothing moved.
    Refused(SessionRecord),
    NotFound,
    /// The payer's hourly number of payments without a second factor for this
    /// merchant is used up; nothing moved.
    AutoLimitReached,
}

/// A line of a wallet's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HistoryEntry {
    pub transfer: Transfer,
    /// Positive for money in, negative for money out of the wallet.
    pub signed_amount: i64,
    pub merchant_name: Option<String>,
    pub description: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RedeemOutcome {
    Redeemed(Voucher),
    Unknown,
    AlreadyRedeemed,
}

#[async_trait]
pub trait LedgerStore: Send + Sync + 'static {
    /// Makes a transfer (posted, or pending when `hold_until` is set), opening the
    /// accounts it names if needed. Refuses with [`LedgerError`] and writes nothing when
    /// a wallet would be overdrawn.
    async fn transfer(&self, spec: &TransferSpec, now_ms: i64) -> Result<Transfer, StoreError>;
    /// Posts or voids a pending transfer, once.
    async fn resolve_transfer(
        &self,
        transfer_id: &str,
        to: TransferState,
        now_ms: i64,
    ) -> Result<Transfer, StoreError>;
    /// Lapses up to `batch` pending transfers past their deadline; returns how many.
    async fn lapse_due(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError>;
    /// Lapses the hold of one session when its deadline has passed, as the sweeper would
    /// (the funds go back, the session expires), so that a read never shows funds held
    /// past their deadline. False when nothing of this session was due.
    async fn lapse_hold_if_due(&self, session_id: &str, now_ms: i64) -> Result<bool, StoreError>;
    /// Charges the payer's wallet for a pending session and marks it paid, with its
    /// event and approval, in one transaction. Insufficient funds refuse with
    /// [`LedgerError::InsufficientFunds`] and change nothing.
    async fn pay_session(
        &self,
        payment: &SessionPayment,
        now_ms: i64,
    ) -> Result<PayOutcome, StoreError>;
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
    /// Credits the voucher's amount to the payer's wallet and marks it used, once.
    async fn redeem_voucher(
        &self,
        code_hash: &str,
        payer_id: &str,
        now_ms: i64,
    ) -> Result<RedeemOutcome, StoreError>;
    async fn approval_of(&self, session_id: &str) -> Result<Option<Approval>, StoreError>;
}
