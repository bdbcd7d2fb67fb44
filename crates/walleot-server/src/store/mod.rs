//! Storage behind one narrow interface. The domain speaks to [`Store`]; each database
//! has its own implementation beside this file with its SQL and migrations, so that a
//! new database joins without any change to handlers or domain code.

mod sqlite;

pub use sqlite::SqliteStore;

use crate::domain::ledger::{
    Account, AccountKind, LedgerError, Transfer, TransferSpec, TransferState,
};
use crate::domain::payers::{
    Approval, ApprovalMethod, Challenge, Passkey, Payer, TotpRecord, Voucher,
};
use crate::domain::sessions::{SessionEvent, SessionRecord};
use crate::domain::Mode;
use async_trait::async_trait;
use walleot_api::SessionStatus;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database write failed: {0}")]
    WriteFailed(String),
    #[error("unsupported database URL `{0}`: use sqlite://PATH")]
    UnsupportedUrl(String),
    /// A transfer broke a rule of the ledger; nothing was written.
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub merchant_id: String,
    /// Filled in by reads; ignored on insert.
    pub merchant_name: String,
    pub mode: Mode,
    /// Hex HMAC-SHA256 of the key.
    pub hash: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

/// The outcome of asking for a status change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transition {
    /// The session was pending and is now in the new state; its event is recorded.
    Applied(SessionRecord),
    /// The session was not pending (or had expired); it is returned unchanged.
    Refused(SessionRecord),
    NotFound,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionPage {
    pub sessions: Vec<SessionRecord>,
    pub has_more: bool,
}

/// What `Idempotency-Key` handling needs to remember of an answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyCompletion {
    pub scope: String,
    pub key: String,
    pub status: u16,
    pub body: Vec<u8>,
}

/// The result of claiming an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// First use (or an abandoned earlier try): the caller runs the request.
    Acquired,
    /// The same request ran to completion before: answer this again.
    Replay { status: u16, body: Vec<u8> },
    /// The key was used for a different request.
    Mismatch,
    /// The same request is still running.
    InProgress,
}

/// Everything the service keeps, in one database.
pub trait Store: SessionStore + LedgerStore + PayerStore {}

impl<T: SessionStore + LedgerStore + PayerStore> Store for T {}

#[async_trait]
pub trait SessionStore: Send + Sync + 'static {
    /// Answers when the database can be reached.
    async fn ping(&self) -> Result<(), StoreError>;

    /// The ids of sessions whose status (or capture status) this process changed, sent
    /// once the change is committed, so that long polls wake without re-reading. A
    /// receiver that lags misses ids: it should then re-read what it watches. Changes
    /// made by another process sharing the database are not seen here.
    fn session_changes(&self) -> tokio::sync::broadcast::Receiver<String>;

    /// A secret kept by the database itself, created on first use.
    async fn secret(&self, name: &str, fresh: Vec<u8>) -> Result<Vec<u8>, StoreError>;

    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), StoreError>;
    /// By id or by name.
    async fn find_merchant(&self, id_or_name: &str) -> Result<Option<Merchant>, StoreError>;
    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// False when no unrevoked key has this id.
    async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;

    async fn insert_session(
        &self,
        session: &SessionRecord,
        created: &SessionEvent,
        completion: Option<&IdempotencyCompletion>,
    ) -> Result<(), StoreError>;
    async fn get_session(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError>;
    /// The position of a session in its owner's list, for cursors.
    async fn session_seq(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<i64>, StoreError>;
    /// Newest first, strictly older than `before_seq` when given. A `status` filter of
    /// pending or expired counts expiry as of `now_ms`.
    async fn list_sessions(
        &self,
        merchant_id: &str,
        livemode: bool,
        status: Option<SessionStatus>,
        before_seq: Option<i64>,
        now_ms: i64,
        limit: i64,
    ) -> Result<SessionPage, StoreError>;
    /// Moves a pending session to `to`, with its event, atomically. Only `expired` may
    /// be applied to a session whose expiry has passed.
    async fn transition(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        to: SessionStatus,
        now_ms: i64,
    ) -> Result<Transition, StoreError>;
    /// Captures (`capture`) or releases the held funds of a paid manual-capture
    /// session, with its event, atomically: `Refused` unless the funds are held.
    async fn settle_hold(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        capture: bool,
        now_ms: i64,
    ) -> Result<Transition, StoreError>;
    /// Expires up to `batch` overdue pending sessions; returns how many.
    async fn expire_due(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError>;
    /// A session by id alone, with its merchant's name: what a checkout page shows.
    async fn session_for_checkout(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRecord, String)>, StoreError>;
    /// The recorded changes of one session, oldest first.
    async fn session_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError>;

    /// Claims `key` for a request with `fingerprint`. A claim still in progress after
    /// `stale_ms` is taken to be abandoned (its request died) and may be claimed again;
    /// a record older than `retain_ms` is forgotten.
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        stale_ms: i64,
        retain_ms: i64,
    ) -> Result<IdempotencyClaim, StoreError>;
    /// Records the answer of a claimed key, unless it was recorded already.
    async fn complete_idempotency_key(
        &self,
        done: &IdempotencyCompletion,
    ) -> Result<(), StoreError>;
    /// Forgets a claim whose request failed in a way worth retrying.
    async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<(), StoreError>;
    /// Deletes records older than `cutoff_ms`; returns how many.
    async fn purge_idempotency_keys(&self, cutoff_ms: i64) -> Result<u64, StoreError>;
}

/// Opens the store a database URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

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

#[async_trait]
pub trait PayerStore: Send + Sync + 'static {
    async fn insert_payer(&self, payer: &Payer) -> Result<(), StoreError>;
    async fn get_payer(&self, id: &str) -> Result<Option<Payer>, StoreError>;
    /// Counts a failed second-factor attempt; at `max` failures in a row the payer's
    /// approvals lock until `now + lock_ms`. Returns the payer as it now stands.
    async fn note_failed_attempt(
        &self,
        payer_id: &str,
        now_ms: i64,
        max: i64,
        lock_ms: i64,
    ) -> Result<Payer, StoreError>;
    async fn clear_failed_attempts(&self, payer_id: &str) -> Result<(), StoreError>;
    /// How many payments without a second factor the payer made to the merchant in
    /// one mode since `since_ms`.
    async fn auto_approvals_since(
        &self,
        payer_id: &str,
        merchant_id: &str,
        livemode: bool,
        since_ms: i64,
    ) -> Result<i64, StoreError>;

    async fn thresholds(
        &self,
        payer_id: &str,
    ) -> Result<Vec<(walleot_api::Currency, i64)>, StoreError>;
    async fn set_threshold(
        &self,
        payer_id: &str,
        currency: walleot_api::Currency,
        amount: i64,
    ) -> Result<(), StoreError>;

    async fn insert_passkey(&self, passkey: &Passkey) -> Result<(), StoreError>;
    async fn passkeys_of(&self, payer_id: &str) -> Result<Vec<Passkey>, StoreError>;
    async fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<Passkey>, StoreError>;
    /// Stores a newer signature counter; false if it did not grow (a cloned key).
    async fn advance_sign_count(
        &self,
        credential_id: &[u8],
        count: i64,
    ) -> Result<bool, StoreError>;

    async fn put_totp(&self, record: &TotpRecord) -> Result<(), StoreError>;
    async fn totp_of(&self, payer_id: &str) -> Result<Option<TotpRecord>, StoreError>;
    /// Accepts a time step once: false if this or a later step was used already.
    async fn use_totp_step(
        &self,
        payer_id: &str,
        step: i64,
        confirm: bool,
    ) -> Result<bool, StoreError>;

    async fn insert_login(
        &self,
        token_hash: &str,
        payer_id: &str,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    async fn find_login(&self, token_hash: &str, now_ms: i64)
        -> Result<Option<String>, StoreError>;
    async fn delete_login(&self, token_hash: &str) -> Result<(), StoreError>;

    async fn insert_challenge(&self, challenge: &Challenge) -> Result<(), StoreError>;
    /// Removes and returns an unexpired challenge: each is used at most once.
    async fn take_challenge(&self, id: &str, now_ms: i64) -> Result<Option<Challenge>, StoreError>;
}
