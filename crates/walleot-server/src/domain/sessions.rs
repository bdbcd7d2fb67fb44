//! Payment sessions: creation from a merchant's request, reading, listing, and the
//! lifecycle `pending` → `paid` | `failed` | `expired` | `cancelled`.
//!
//! Each transition happens once: [`payments`] plans it from the session as read, and
//! the store writes the plan, with its event, only while the session is still pending,
//! so two racing requests (a cancel and a payment, two cancels) leave exactly one
//! outcome. A pending session whose expiry has
//! passed reads `expired` whether or not the sweeper has written that yet.

use super::ledger::{Book, LedgerError};
use super::mandates::Mandates;
use super::money::Amount;
use super::payments::{
    self, Closing, HoldAction, PartCapture, Plan, RefundRecord, RefundRefusal, Settlement,
};
use super::wallets::Wallets;
use super::{ids, paging, Clock, DomainError, Livemode, Principal};
use crate::domain::ports::{
    CoveredPayment, IdempotencyCompletion, SessionPage, Store, StoreError, Transition,
};
use std::collections::BTreeMap;
use std::sync::Arc;
use walleot_api::{CaptureMethod, CaptureStatus, CreateSessionRequest, Currency, SessionStatus};

/// Limits on what a merchant may ask for.
#[derive(Debug, Clone)]
pub struct SessionPolicy {
    /// Largest amount in minor units.
    pub max_amount: i64,
    pub default_ttl_secs: i64,
    pub min_ttl_secs: i64,
    pub max_ttl_secs: i64,
    pub max_description_chars: usize,
}

impl Default for SessionPolicy {
    fn default() -> Self {
        SessionPolicy {
            max_amount: Amount::DEFAULT_MAX,
            default_ttl_secs: crate::domain::clock::DAY_SECS,
            min_ttl_secs: 60,
            max_ttl_secs: 7 * crate::domain::clock::DAY_SECS,
            max_description_chars: 1000,
        }
    }
}

/// What a test helper does to a test session: pay it as a sandbox payer would, or fail
/// or expire it as the payer or time would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Simulation {
    Pay,
    Fail,
    Expire,
}

/// A request for a session that meets every rule of the policy: made only by
/// [`NewSession::parse`], so a session cannot be prepared from an unchecked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewSession {
    pub amount: Amount,
    pub currency: Currency,
    /// Plain visible text within the policy's length.
    pub description: Option<String>,
    pub ttl_secs: i64,
    pub capture_method: CaptureMethod,
    pub metadata: BTreeMap<String, String>,
    /// The merchant's reference for its user or agent: 1 to 255 printable characters.
    pub customer: Option<String>,
}

impl NewSession {
    /// Checks each field of the request in turn; the first that breaks a rule is named.
    pub fn parse(
        request: CreateSessionRequest,
        policy: &SessionPolicy,
    ) -> Result<Self, DomainError> {
        let amount = Amount::new(request.amount, policy.max_amount)?;
        let currency: Currency =
            request
                .currency
                .parse()
                .map_err(|e: walleot_api::UnknownCurrency| {
                    DomainError::invalid("currency", e.to_string())
                })?;
        let metadata = request.metadata.unwrap_or_default();
        check_metadata(&metadata)?;
        if let Some(description) = &request.description {
            let chars = description.chars().count();
            if chars > policy.max_description_chars {
                return Err(DomainError::invalid(
                    "description",
                    format!(
                        "has {chars} characters; at most {} are allowed",
                        policy.max_description_chars
                    ),
                ));
            }
            if let Some((at, c)) = hidden_character(description) {
                return Err(DomainError::invalid(
                    "description",
                    format!(
                        "must be plain visible text: U+{:04X} at character {} is a control, \
                         invisible formatting or bidirectional override character",
                        c as u32,
                        at + 1
                    ),
                ));
            }
        }
        if let Some(customer) = &request.customer {
            check_customer(customer)?;
        }
        let ttl_secs = request.expires_in.unwrap_or(policy.default_ttl_secs);
        if ttl_secs < policy.min_ttl_secs || ttl_secs > policy.max_ttl_secs {
            return Err(DomainError::invalid(
                "expiresIn",
                format!(
                    "must be between {} and {} seconds",
                    policy.min_ttl_secs, policy.max_ttl_secs
                ),
            ));
        }
        Ok(NewSession {
            amount,
            currency,
            description: request.description,
            ttl_secs,
            capture_method: request.capture_method.unwrap_or_default(),
            metadata,
            customer: request.customer,
        })
    }
}

/// Most characters of a customer reference.
pub const MAX_CUSTOMER_CHARS: usize = 255;

/// A customer reference is printable ASCII, so that the merchant's id for its user reads
/// the same everywhere it is shown and compared.
pub(crate) fn check_customer(customer: &str) -> Result<(), DomainError> {
    if customer.is_empty() || customer.len() > MAX_CUSTOMER_CHARS {
        return Err(DomainError::invalid(
            "customer",
            format!("must be 1 to {MAX_CUSTOMER_CHARS} characters"),
        ));
    }
    if let Some(bad) = customer.chars().find(|c| !(' '..='~').contains(c)) {
        return Err(DomainError::invalid(
            "customer",
            format!(
                "must be printable ASCII characters; U+{:04X} is not",
                bad as u32
            ),
        ));
    }
    Ok(())
}

/// Keys a session's metadata may have.
pub const MAX_METADATA_KEYS: usize = 50;
const MAX_METADATA_KEY_CHARS: usize = 40;
const MAX_METADATA_VALUE_CHARS: usize = 500;

/// Metadata keys are short names (letters, digits, `_`, `-`, `.`); values are plain
/// visible text, as descriptions are, since both may be shown to people.
fn check_metadata(metadata: &BTreeMap<String, String>) -> Result<(), DomainError> {
    if metadata.len() > MAX_METADATA_KEYS {
        return Err(DomainError::invalid(
            "metadata",
            format!(
                "has {} keys; at most {MAX_METADATA_KEYS} are allowed",
                metadata.len()
            ),
        ));
    }
    for (key, value) in metadata {
        let name_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.');
        if key.is_empty()
            || key.chars().count() > MAX_METADATA_KEY_CHARS
            || !key.chars().all(name_char)
        {
            return Err(DomainError::invalid(
                "metadata",
                format!(
                    "key {key:?} must be 1 to {MAX_METADATA_KEY_CHARS} letters, digits, `_`, `-` or `.`"
                ),
            ));
        }
        let chars = value.chars().count();
        if chars > MAX_METADATA_VALUE_CHARS {
            return Err(DomainError::invalid(
                "metadata",
                format!("value of {key:?} has {chars} characters; at most {MAX_METADATA_VALUE_CHARS} are allowed"),
            ));
        }
        if let Some((at, c)) = hidden_character(value) {
            return Err(DomainError::invalid(
                "metadata",
                format!(
                    "value of {key:?} must be plain visible text: U+{:04X} at character {} is not",
                    c as u32,
                    at + 1
                ),
            ));
        }
    }
    Ok(())
}

/// A session as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRecord {
    pub id: String,
    pub merchant_id: String,
    pub livemode: bool,
    pub amount: i64,
    pub currency: Currency,
    pub description: Option<String>,
    pub status: SessionStatus,
    pub created_at: i64,
    pub expires_at: i64,
    pub updated_at: i64,
    pub capture_method: CaptureMethod,
    pub capture_status: Option<CaptureStatus>,
    /// The merchant's labels, checked at creation.
    pub metadata: BTreeMap<String, String>,
    /// The merchant's reference for its user or agent, given at creation.
    pub customer: Option<String>,
    /// The mandate that paid the session without a click, and the start of the
    /// mandate's period the payment counted in.
    pub mandate_id: Option<String>,
    pub mandate_period: Option<i64>,
    /// What moved to the merchant; `None` until then.
    pub amount_captured: Option<i64>,
    /// What went back to the payer since, in `refund_count` refunds.
    pub amount_refunded: i64,
    pub refund_count: i64,
}

impl SessionRecord {
    /// The books the session's money moves in.
    pub fn book(&self) -> Book {
        Book::new(self.currency, self.livemode)
    }

    /// The status as of `now_ms`: a pending session past its expiry is expired.
    pub fn status_at(&self, now_ms: i64) -> SessionStatus {
        if self.status == SessionStatus::Pending && now_ms >= self.expires_at {
            SessionStatus::Expired
        } else {
            self.status
        }
    }
}

/// An entry of the append-only record of session changes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionEvent {
    pub id: String,
    pub session_id: String,
    /// `session.created`, `session.paid`, `session.failed`, `session.expired`,
    /// `session.cancelled`.
    pub kind: String,
    pub from_status: Option<SessionStatus>,
    pub to_status: SessionStatus,
    pub created_at: i64,
}

impl SessionEvent {
    pub fn new(session_id: &str, from: Option<SessionStatus>, to: SessionStatus, at: i64) -> Self {
        let kind = match from {
            None => "session.created".to_string(),
            Some(_) => format!("session.{to}"),
        };
        Self::named(session_id, &kind, from, to, at)
    }

    /// An event whose name is not the new status (`session.captured`, `session.released`).
    pub fn named(
        session_id: &str,
        kind: &str,
        from: Option<SessionStatus>,
        to: SessionStatus,
        at: i64,
    ) -> Self {
        let kind = kind.to_string();
        SessionEvent {
            id: ids::new_id("evt"),
            session_id: session_id.to_string(),
            kind,
            from_status: from,
            to_status: to,
            created_at: at,
        }
    }
}

/// The first character of a description that a checkout would show invisibly or that
/// would reorder the text around it, with its position: control characters other than
/// the newline, bidirectional controls and marks, zero-width and other format (Cf)
/// characters, and line or paragraph separators. A zero-width joiner or non-joiner is
/// allowed between two visible characters, where emoji sequences and some scripts
/// need it.
pub fn hidden_character(text: &str) -> Option<(usize, char)> {
    let chars: Vec<char> = text.chars().collect();
    let visible = |i: Option<usize>| {
        i.and_then(|i| chars.get(i))
            .is_some_and(|c| !c.is_whitespace() && !is_format(*c) && !c.is_control())
    };
    chars.iter().enumerate().find_map(|(i, &c)| {
        let hidden = match c {
            '\n' => false,
            '\u{200C}' | '\u{200D}' => !(visible(i.checked_sub(1)) && visible(Some(i + 1))),
            '\u{2028}' | '\u{2029}' => true,
            c => c.is_control() || is_format(c),
        };
        hidden.then_some((i, c))
    })
}

/// Unicode general category Cf (format characters).
fn is_format(c: char) -> bool {
    use unicode_general_category::{get_general_category, GeneralCategory};
    get_general_category(c) == GeneralCategory::Format
}

/// The session's merchant and mode, as if its own key asked.
fn owner_of(session: &SessionRecord) -> Principal {
    Principal {
        key_id: String::new(),
        merchant_id: session.merchant_id.clone(),
        merchant_name: String::new(),
        mode: Livemode::from_flag(session.livemode),
    }
}

/// Filters and position of a list request.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub limit: Option<i64>,
    pub cursor: Option<String>,
    pub status: Option<SessionStatus>,
}

/// How often a waiting read looks at the database when nothing in this process woke it.
pub const WAIT_RECHECK: std::time::Duration = std::time::Duration::from_millis(400);

/// Completes when `changes` names `id`, or when it lagged and may have missed it.
async fn changed(changes: &mut tokio::sync::broadcast::Receiver<String>, id: &str) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        match changes.recv().await {
            Ok(changed) if changed == id => return,
            Ok(_) => {}
            Err(RecvError::Lagged(_)) => return,
            // No sender any more: only the periodic re-read is left.
            Err(RecvError::Closed) => std::future::pending().await,
        }
    }
}

#[derive(Clone)]
pub struct Sessions {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: SessionPolicy,
    wallets: Wallets,
    mandates: Mandates,
}

/// Makes the answer to a request, to be kept with its change, from the session as the
/// change leaves it.
pub type Answer<'a> = dyn Fn(&SessionRecord) -> IdempotencyCompletion + Send + Sync + 'a;

/// Makes the answer to a refund request, to be kept with the refund.
pub type RefundAnswer<'a> = dyn Fn(&RefundRecord) -> IdempotencyCompletion + Send + Sync + 'a;

/// What a merchant asks of a session's held funds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Settle {
    /// All of them (`None`) or this much to the merchant, the rest back to the payer.
    Capture { amount: Option<i64> },
    /// All back to the payer.
    Release,
}

/// Concurrent refunds of one session that each find the other made first, before one
/// of them gives up with 409.
const REFUND_ATTEMPTS: usize = 10;

/// Why a session cannot be refunded, as the merchant is told.
fn refused(session: &SessionRecord, refusal: RefundRefusal) -> DomainError {
    match refusal {
        RefundRefusal::NotCaptured => DomainError::Conflict(match session.capture_status {
            Some(CaptureStatus::Held) if session.status == SessionStatus::Paid => {
                "the funds are held, not captured: capture or release them instead".into()
            }
            _ => format!(
                "the session is {}; only a paid session's captured funds can be refunded",
                session.status
            ),
        }),
        RefundRefusal::NothingLeft => {
            DomainError::Conflict("the session's payment was refunded in full already".into())
        }
        RefundRefusal::Exceeds { left } => {
            DomainError::Conflict(format!("amount: at most {left} is left to refund"))
        }
        RefundRefusal::TooMany => DomainError::Conflict(format!(
            "the session has {} refunds, the most one session can have",
            walleot_api::MAX_REFUNDS_PER_SESSION
        )),
    }
}

/// The answer for a session the caller's account does not have (or that does not exist).
fn not_found(id: &str) -> DomainError {
    DomainError::NotFound(format!("no session `{id}`"))
}

impl Sessions {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        policy: SessionPolicy,
        wallets: Wallets,
        mandates: Mandates,
    ) -> Self {
        Sessions {
            store,
            clock,
            policy,
            wallets,
            mandates,
        }
    }

    /// Checks a request against the policy and turns it into a new pending session.
    pub fn prepare(
        &self,
        owner: &Principal,
        request: CreateSessionRequest,
    ) -> Result<SessionRecord, DomainError> {
        let new = NewSession::parse(request, &self.policy)?;
        let now = self.clock.now_ms();
        Ok(SessionRecord {
            id: ids::new_id("sess"),
            merchant_id: owner.merchant_id.clone(),
            livemode: owner.mode.is_live(),
            amount: new.amount.minor(),
            currency: new.currency,
            description: new.description,
            status: SessionStatus::Pending,
            created_at: now,
            expires_at: now + new.ttl_secs * 1000,
            updated_at: now,
            capture_method: new.capture_method,
            capture_status: None,
            metadata: new.metadata,
            customer: new.customer,
            mandate_id: None,
            mandate_period: None,
            amount_captured: None,
            amount_refunded: 0,
            refund_count: 0,
        })
    }

    /// The payment that pays a prepared session at creation, when one of its customer's
    /// mandates covers it: the plan, and the session as it would then read.
    pub async fn covering_payment(
        &self,
        session: &SessionRecord,
    ) -> Result<Option<(Plan, SessionRecord)>, DomainError> {
        let plan = self
            .mandates
            .covering_plan(session, self.wallets.hold_ms())
            .await?;
        Ok(plan.map(|plan| {
            let paid = plan.change.applied_to(session);
            (plan, paid)
        }))
    }

    /// Stores a prepared session with its `session.created` event and, when the request
    /// carried an idempotency key, the answer to replay, all in one transaction. With a
    /// covering payment, the same transaction pays the session if the mandate's budget
    /// still covers it (then `covered`'s answer is the one kept), and leaves it pending
    /// otherwise. Answers the session as stored.
    pub async fn insert(
        &self,
        session: &SessionRecord,
        completion: Option<&IdempotencyCompletion>,
        covered: Option<&CoveredPayment>,
    ) -> Result<SessionRecord, DomainError> {
        let event = SessionEvent::new(
            &session.id,
            None,
            SessionStatus::Pending,
            session.created_at,
        );
        let paid = self
            .store
            .insert_session(session, &event, completion, covered)
            .await?;
        Ok(paid.unwrap_or_else(|| session.clone()))
    }

    pub async fn get(&self, owner: &Principal, id: &str) -> Result<SessionRecord, DomainError> {
        let session = self.find(owner, id).await?;
        self.as_of_now(session).await
    }

    /// [`Self::get`] of a session already read with its owner's key (see
    /// `Keys::authenticate_reading`): `None` is a session the key's account does not have.
    pub async fn get_read(
        &self,
        id: &str,
        session: Option<SessionRecord>,
    ) -> Result<SessionRecord, DomainError> {
        match session {
            Some(session) => self.as_of_now(session).await,
            None => Err(not_found(id)),
        }
    }

    /// A session as of now: a hold past its deadline lapsed, a pending session past its
    /// expiry written down as expired.
    async fn as_of_now(&self, mut session: SessionRecord) -> Result<SessionRecord, DomainError> {
        let now = self.clock.now_ms();
        if let Some(lapsed) = self.lapse_if_due(&session, now).await? {
            session = lapsed;
        }
        if session.status == SessionStatus::Pending
            && session.status_at(now) == SessionStatus::Expired
        {
            return self.record_expiry(session, now).await;
        }
        Ok(session)
    }

    /// Reads a session, waiting up to `wait` while it is pending: answers as soon as its
    /// status changes (also when its expiry passes), else at the end of the wait with
    /// the session as it then is. Changes made in this process wake the wait at once;
    /// the session is also re-read every [`WAIT_RECHECK`], so that changes made by
    /// another process sharing the database are seen too. Nothing is held in between.
    pub async fn wait(
        &self,
        owner: &Principal,
        id: &str,
        wait: std::time::Duration,
    ) -> Result<SessionRecord, DomainError> {
        // Subscribe before the first read, so that no change slips in between.
        let mut changes = self.store.session_changes();
        let until = tokio::time::Instant::now() + wait;
        loop {
            let session = self.get(owner, id).await?;
            let now = tokio::time::Instant::now();
            if session.status != SessionStatus::Pending || now >= until {
                return Ok(session);
            }
            let to_expiry = (session.expires_at - self.clock.now_ms()).max(0) as u64;
            let nap = (until - now)
                .min(WAIT_RECHECK)
                .min(std::time::Duration::from_millis(to_expiry));
            tokio::select! {
                _ = changed(&mut changes, &session.id) => {}
                _ = tokio::time::sleep(nap) => {}
            }
        }
    }

    pub async fn list(
        &self,
        owner: &Principal,
        query: ListQuery,
    ) -> Result<SessionPage, DomainError> {
        let limit = paging::page_limit(query.limit)?;
        let after = match paging::cursor(query.cursor.as_deref(), "sess")? {
            None => None,
            Some(cursor) => Some(
                self.store
                    .session_seq(&owner.merchant_id, owner.mode.is_live(), cursor)
                    .await?
                    .ok_or_else(|| paging::unknown_cursor("session", cursor))?,
            ),
        };
        let now = self.clock.now_ms();
        let mut page = self
            .store
            .list_sessions(
                &owner.merchant_id,
                owner.mode.is_live(),
                query.status,
                after,
                now,
                limit,
            )
            .await?;
        for session in &mut page.sessions {
            // A hold past its deadline is given back here too, as a read would.
            if let Some(lapsed) = self.lapse_if_due(session, now).await? {
                *session = lapsed;
            }
            session.status = session.status_at(now);
        }
        Ok(page)
    }

    pub async fn cancel(&self, owner: &Principal, id: &str) -> Result<SessionRecord, DomainError> {
        self.transition(owner, id, Closing::Cancel, "cancelled")
            .await
    }

    /// Test-mode helpers that act as a payer or as time would.
    pub async fn simulate(
        &self,
        owner: &Principal,
        id: &str,
        what: Simulation,
    ) -> Result<SessionRecord, DomainError> {
        if owner.mode != Livemode::Test {
            return Err(DomainError::Forbidden(
                "test helpers accept only test keys (sk_test_…)".into(),
            ));
        }
        match what {
            Simulation::Pay => self.pay_as_sandbox_payer(owner, id).await,
            Simulation::Fail => self.transition(owner, id, Closing::Fail, "failed").await,
            Simulation::Expire => self.transition(owner, id, Closing::Expire, "expired").await,
        }
    }

    /// Pays through the ledger, from the merchant's sandbox payer.
    async fn pay_as_sandbox_payer(
        &self,
        owner: &Principal,
        id: &str,
    ) -> Result<SessionRecord, DomainError> {
        let session = self.find(owner, id).await?;
        match self.wallets.pay_as_sandbox_payer(&session).await {
            Ok(paid) => Ok(paid),
            Err(DomainError::Closed(SessionStatus::Paid)) => self.find(owner, id).await,
            Err(DomainError::Closed(status)) => {
                if session.status == SessionStatus::Pending && status == SessionStatus::Expired {
                    self.record_expiry(session, self.clock.now_ms()).await?;
                }
                Err(DomainError::Conflict(format!(
                    "the session is {status}; only a pending session can be paid"
                )))
            }
            Err(DomainError::NotFound(_)) => Err(not_found(id)),
            // The top-up and the charge share a transaction, so this is not expected.
            Err(DomainError::InsufficientFunds { .. }) => Err(DomainError::Retry(
                "the sandbox payer could not be funded; retry the request".into(),
            )),
            Err(other) => Err(other),
        }
    }

    /// Moves the held funds of a paid manual-capture session to the merchant (all, or
    /// the amount asked, the rest going back to the payer), or returns them to the
    /// payer, the session then reading `cancelled`. `answer` makes the request's answer
    /// from the session as it will be; it is kept in the transaction that settles.
    /// Answers the session and whether its answer was kept so (not when the session was
    /// settled already, or the request refused).
    pub async fn settle(
        &self,
        owner: &Principal,
        id: &str,
        request: Settle,
        answer: Option<&Answer<'_>>,
    ) -> Result<(SessionRecord, bool), DomainError> {
        let session = self.find(owner, id).await?;
        let now = self.clock.now_ms();
        let hold = match session.capture_status {
            Some(CaptureStatus::Held) => self.store.hold_of(&session.id).await?,
            _ => None,
        };
        let capture = matches!(request, Settle::Capture { .. });
        let action = match request {
            Settle::Release => HoldAction::Release,
            Settle::Capture { amount: None } => HoldAction::Capture(None),
            Settle::Capture {
                amount: Some(amount),
            } => {
                if amount < 1 {
                    return Err(DomainError::invalid("amount", "must be at least 1"));
                }
                if amount > session.amount {
                    return Err(DomainError::Conflict(format!(
                        "amount: {amount} is more than the {} held",
                        session.amount
                    )));
                }
                if amount == session.amount || hold.is_none() {
                    HoldAction::Capture(None)
                } else {
                    HoldAction::Capture(Some(PartCapture {
                        amount,
                        payer_id: self.payer_of(&session).await?,
                    }))
                }
            }
        };
        let outcome = match payments::plan_settlement(&session, hold.as_ref(), &action, now) {
            // Read as held, but its hold was resolved since: read the session again.
            Settlement::NothingHeld if hold.is_some() => {
                Transition::Stale(self.find(owner, id).await?)
            }
            Settlement::NothingHeld => Transition::Stale(session),
            // The request is refused either way; the session answers as it now is.
            Settlement::Lapse(plan) => match self.store.apply_plan(&plan).await? {
                Transition::Applied(current) | Transition::Stale(current) => {
                    Transition::Stale(current)
                }
                Transition::NotFound => Transition::NotFound,
            },
            Settlement::Settle(plan) => {
                let kept = answer.map(|answer| answer(&plan.change.applied_to(&session)));
                return match self.store.apply_plan_answering(&plan, kept.as_ref()).await {
                    Ok(Transition::Applied(updated)) => Ok((updated, kept.is_some())),
                    Ok(outcome) => Self::settled(outcome, id, capture),
                    // The hold was resolved a moment ago: nothing is held any more.
                    Err(StoreError::Ledger(LedgerError::NotPending)) => {
                        Self::settled(Transition::Stale(session), id, capture)
                    }
                    Err(e) => Err(e.into()),
                };
            }
        };
        Self::settled(outcome, id, capture)
    }

    /// What a capture or release comes to when its own plan was not applied.
    fn settled(
        outcome: Transition,
        id: &str,
        capture: bool,
    ) -> Result<(SessionRecord, bool), DomainError> {
        let (verb, done) = if capture {
            ("captured", CaptureStatus::Captured)
        } else {
            ("released", CaptureStatus::Released)
        };
        match outcome {
            Transition::Applied(updated) => Ok((updated, false)),
            Transition::NotFound => Err(not_found(id)),
            Transition::Stale(current) if current.capture_status == Some(done) => {
                Ok((current, false))
            }
            Transition::Stale(current) => Err(DomainError::Conflict(
                match (current.capture_method, current.capture_status) {
                    (CaptureMethod::Automatic, _) => {
                        format!("the session uses automatic capture; nothing is held to be {verb}")
                    }
                    (CaptureMethod::Manual, None) => format!(
                        "the session is {}; only held funds can be {verb}",
                        current.status
                    ),
                    (CaptureMethod::Manual, Some(CaptureStatus::Released))
                        if current.status == SessionStatus::Expired =>
                    {
                        "the hold passed its deadline; the funds went back to the payer and \
                         the session expired"
                            .to_string()
                    }
                    (CaptureMethod::Manual, Some(status)) => {
                        format!("the funds were already {}", status.as_str())
                    }
                },
            )),
        }
    }

    /// A session by id alone, for its checkout page, with its merchant's name; an
    /// overdue pending session has its expiry recorded first.
    pub async fn for_checkout(&self, id: &str) -> Result<(SessionRecord, String), DomainError> {
        if !ids::has_shape(id, "sess") {
            return Err(not_found(id));
        }
        let (session, merchant) = self
            .store
            .session_for_checkout(id)
            .await?
            .ok_or_else(|| not_found(id))?;
        let now = self.clock.now_ms();
        if session.status == SessionStatus::Pending
            && session.status_at(now) == SessionStatus::Expired
        {
            return Ok((self.record_expiry(session, now).await?, merchant));
        }
        Ok((session, merchant))
    }

    /// The payer declines: the session is cancelled.
    pub async fn decline(&self, session: &SessionRecord) -> Result<SessionRecord, DomainError> {
        self.transition(&owner_of(session), &session.id, Closing::Cancel, "declined")
            .await
    }

    /// Moves pending sessions past their expiry to `expired`; returns how many.
    pub async fn expire_due(&self, batch: i64) -> Result<usize, DomainError> {
        Ok(payments::expire_due(&*self.store, self.clock.now_ms(), batch).await?)
    }

    /// Lapses the session's hold when its deadline has passed, as the sweeper would, so
    /// that a read never shows funds held past it: the session as it now is, or `None`
    /// when nothing was due.
    async fn lapse_if_due(
        &self,
        session: &SessionRecord,
        now: i64,
    ) -> Result<Option<SessionRecord>, DomainError> {
        if session.capture_status != Some(CaptureStatus::Held) {
            return Ok(None);
        }
        let hold = self.store.hold_of(&session.id).await?;
        let Some(plan) = payments::plan_lapse_if_due(session, hold.as_ref(), now) else {
            return Ok(None);
        };
        Ok(payments::current(self.store.apply_plan(&plan).await?))
    }

    /// Gives `amount` (all that is left when `None`) of a session's captured payment
    /// back to its payer, from the merchant's balance; the session stays `paid`.
    /// `answer` makes the request's answer from the refund; it is kept in the
    /// transaction that refunds. Answers the refund, the session as it now is, and
    /// whether the answer was kept so.
    pub async fn refund(
        &self,
        owner: &Principal,
        id: &str,
        amount: Option<i64>,
        reason: Option<walleot_api::RefundReason>,
        answer: Option<&RefundAnswer<'_>>,
    ) -> Result<(RefundRecord, SessionRecord, bool), DomainError> {
        if amount.is_some_and(|amount| amount < 1) {
            return Err(DomainError::invalid("amount", "must be at least 1"));
        }
        let mut session = self.find(owner, id).await?;
        for _ in 0..REFUND_ATTEMPTS {
            let payer_id = match session.amount_captured {
                Some(_) => self.payer_of(&session).await?,
                None => String::new(),
            };
            let plan =
                payments::plan_refund(&session, &payer_id, amount, reason, self.clock.now_ms())
                    .map_err(|refusal| refused(&session, refusal))?;
            let refund = plan.refund.clone().expect("a refund plan makes a refund");
            let kept = answer.map(|answer| answer(&refund));
            match self.store.apply_plan_answering(&plan, kept.as_ref()).await {
                Ok(Transition::Applied(updated)) => return Ok((refund, updated, kept.is_some())),
                // Another refund came first: plan again from the session as it now is.
                Ok(Transition::Stale(current)) => session = current,
                Ok(Transition::NotFound) => return Err(not_found(id)),
                Err(StoreError::Ledger(LedgerError::InsufficientFunds { available, needed })) => {
                    return Err(DomainError::InsufficientBalance { available, needed })
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(DomainError::Retry(
            "other refunds of this session were being made at the same time; retry the request"
                .into(),
        ))
    }

    /// A page of the events of the caller's sessions, newest first, after `cursor`
    /// (the id of the last event of the previous page); and whether more follow.
    pub async fn events(
        &self,
        owner: &Principal,
        limit: Option<i64>,
        cursor: Option<&str>,
    ) -> Result<(Vec<crate::domain::events::EventRecord>, bool), DomainError> {
        let limit = paging::page_limit(limit)?;
        let livemode = owner.mode.is_live();
        let before = match paging::cursor(cursor, "evt")? {
            None => None,
            Some(cursor) => Some(
                self.store
                    .event_position(&owner.merchant_id, livemode, cursor)
                    .await?
                    .ok_or_else(|| paging::unknown_cursor("event", cursor))?,
            ),
        };
        Ok(self
            .store
            .list_events(&owner.merchant_id, livemode, before, limit)
            .await?)
    }

    /// The refunds of a session, oldest first, with the session.
    pub async fn refunds(
        &self,
        owner: &Principal,
        id: &str,
    ) -> Result<(SessionRecord, Vec<RefundRecord>), DomainError> {
        let session = self.find(owner, id).await?;
        let refunds = self.store.refunds_of(&session.id).await?;
        Ok((session, refunds))
    }

    /// The payer whose approval paid a session.
    async fn payer_of(&self, session: &SessionRecord) -> Result<String, DomainError> {
        self.store.payer_of(&session.id).await?.ok_or_else(|| {
            DomainError::Store(StoreError::Corrupt(format!(
                "session {} was paid without an approval",
                session.id
            )))
        })
    }

    async fn find(&self, owner: &Principal, id: &str) -> Result<SessionRecord, DomainError> {
        if !ids::has_shape(id, "sess") {
            return Err(not_found(id));
        }
        self.store
            .get_session(&owner.merchant_id, owner.mode.is_live(), id)
            .await?
            .ok_or_else(|| not_found(id))
    }

    async fn record_expiry(
        &self,
        session: SessionRecord,
        now: i64,
    ) -> Result<SessionRecord, DomainError> {
        let id = session.id.clone();
        let outcome = match payments::plan_closing(&session, Closing::Expire, now) {
            Some(plan) => self.store.apply_plan(&plan).await?,
            None => Transition::Stale(session),
        };
        match outcome {
            Transition::Applied(updated) | Transition::Stale(updated) => Ok(SessionRecord {
                status: updated.status_at(now),
                ..updated
            }),
            Transition::NotFound => Err(not_found(&id)),
        }
    }

    async fn transition(
        &self,
        owner: &Principal,
        id: &str,
        closing: Closing,
        verb: &str,
    ) -> Result<SessionRecord, DomainError> {
        let session = self.find(owner, id).await?;
        let to = closing.status();
        let now = self.clock.now_ms();
        let outcome = match payments::plan_closing(&session, closing, now) {
            Some(plan) => self.store.apply_plan(&plan).await?,
            None => Transition::Stale(session),
        };
        match outcome {
            Transition::Applied(updated) => Ok(updated),
            Transition::NotFound => Err(not_found(id)),
            Transition::Stale(current) => {
                let status = current.status_at(now);
                if status == to {
                    // Asking again for the state the session is in changes nothing.
                    return Ok(SessionRecord { status, ..current });
                }
                if current.status == SessionStatus::Pending {
                    // Pending on disk, expired by the clock: write the expiry down.
                    self.record_expiry(current, now).await?;
                }
                Err(DomainError::Conflict(format!(
                    "the session is {status}; only a pending session can be {verb}"
                )))
            }
        }
    }
}
