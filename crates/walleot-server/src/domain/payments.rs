//! The rules of moving a session's money: paying it (hold or post), capturing (all or
//! part) or releasing a hold, lapsing a hold at its deadline, expiring, cancelling or
//! failing a pending session, refunding a captured payment, and redeeming a voucher.
//!
//! Each rule is a pure function from what was read (a session, its hold, a voucher) to a
//! plan: the transfers to make, the session's new state, its event and approval, and
//! the precondition the plan was made for. The store applies a plan atomically, or
//! answers that its precondition no longer holds and writes nothing; so a second
//! database implements storage, never these rules again.

use super::ids;
use super::ledger::{AccountRef, LedgerError, Transfer, TransferKind, TransferSpec, TransferState};
use super::payers::{Approval, ApprovalMethod, Voucher};
use super::sessions::{SessionEvent, SessionRecord};
use crate::domain::ports::{LedgerStore, PlanOutcome, SessionStore, StoreError};
use walleot_api::{
    CaptureMethod, CaptureStatus, RefundReason, SessionStatus, MAX_REFUNDS_PER_SESSION,
};

/// The span of the cap on payments without a second factor.
pub const HOUR_MS: i64 = 3600 * 1000;

/// What to write for one session, and under which precondition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub session_id: String,
    pub precondition: Precondition,
    /// Made in this order, once the precondition is found to hold.
    pub ledger: Vec<LedgerStep>,
    pub change: SessionChange,
    pub event: SessionEvent,
    /// The payer's approval, kept with a payment as its evidence.
    pub approval: Option<Approval>,
    /// What the plan adds to (or gives back of) a mandate's spending.
    pub mandate_spend: Option<MandateSpend>,
    /// The refund the plan makes, kept with its transfer.
    pub refund: Option<RefundRecord>,
}

/// Money given back to a session's payer: made once, never changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefundRecord {
    pub id: String,
    pub session_id: String,
    pub amount: i64,
    pub currency: walleot_api::Currency,
    pub reason: Option<RefundReason>,
    pub transfer_id: String,
    pub created_at: i64,
}

/// A change of what was spent under a mandate: `amount` (negative to give back) in the
/// period starting at `period_start`, and in its total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateSpend {
    pub mandate_id: String,
    pub period_start: Option<i64>,
    pub amount: i64,
}

/// What must still be true when the plan is written; the plan was made for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Precondition {
    /// The session is pending and, with `unexpired_at`, its expiry comes after that
    /// instant; with `auto_approvals`, the payer is still under the hourly cap.
    Pending {
        unexpired_at: Option<i64>,
        auto_approvals: Option<AutoApprovalCap>,
        /// A payment under a mandate: its budget still covers the amount.
        mandate: Option<MandateBudget>,
    },
    /// The session's funds are still held by this pending transfer.
    Held { hold_transfer_id: String },
    /// The session is paid, and what was captured and not yet refunded covers `amount`,
    /// with fewer than [`MAX_REFUNDS_PER_SESSION`] refunds made: checked when the plan
    /// is written, so that concurrent refunds never give back more than was taken.
    Refundable { amount: i64 },
}

/// Fewer than `limit` approvals without a second factor by the payer for this merchant
/// and mode since `since_ms`, counted when the plan is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AutoApprovalCap {
    pub payer_id: String,
    pub merchant_id: String,
    pub livemode: bool,
    pub since_ms: i64,
    pub limit: i64,
}

/// The mandate is neither revoked nor expired at `now_ms`, and what was spent under it
/// (payments held or captured) plus `amount` stays within its period limit since
/// `period_start` and within its total limit; checked when the plan is written, so
/// that concurrent charges cannot spend past a budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MandateBudget {
    pub mandate_id: String,
    pub amount: i64,
    pub now_ms: i64,
    pub period_start: Option<i64>,
    pub period_limit: Option<i64>,
    pub total_limit: Option<i64>,
}

/// A movement of money within a plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerStep {
    /// Makes this transfer: posted, or a hold when it has a deadline.
    Transfer { id: String, spec: TransferSpec },
    /// Credits `spec.credit` from `spec.debit` by what its available balance lacks of
    /// `spec.amount`, and nothing when it lacks nothing: covers a charge from the
    /// sandbox, measured when the plan is written so that concurrent charges cannot
    /// spend each other's cover.
    CoverShortfall { id: String, spec: TransferSpec },
    /// Posts, voids or lapses a pending transfer.
    Resolve {
        transfer_id: String,
        to: TransferState,
    },
}

/// The session's state after the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    pub status: SessionStatus,
    pub capture_status: Option<CaptureStatus>,
    /// The hold now keeping the session's funds; `None` leaves it as it is.
    pub hold_transfer_id: Option<String>,
    /// A new expiry; `None` leaves it as it is.
    pub expires_at: Option<i64>,
    /// The mandate paying the session, and the start of its period the payment counts
    /// in; `None` leaves them as they are.
    pub mandate_id: Option<String>,
    pub mandate_period: Option<i64>,
    /// What moved to the merchant, once it has; `None` leaves it as it is.
    pub amount_captured: Option<i64>,
    /// A refund of this much, added to what was refunded.
    pub refunded: Option<i64>,
    pub updated_at: i64,
}

impl SessionChange {
    /// The session as it reads once this change is written.
    pub fn applied_to(&self, session: &SessionRecord) -> SessionRecord {
        SessionRecord {
            status: self.status,
            capture_status: self.capture_status,
            expires_at: self.expires_at.unwrap_or(session.expires_at),
            mandate_id: self
                .mandate_id
                .clone()
                .or_else(|| session.mandate_id.clone()),
            mandate_period: self.mandate_period.or(session.mandate_period),
            amount_captured: self.amount_captured.or(session.amount_captured),
            amount_refunded: session.amount_refunded + self.refunded.unwrap_or(0),
            refund_count: session.refund_count + i64::from(self.refunded.is_some()),
            updated_at: self.updated_at,
            ..session.clone()
        }
    }
}

/// How a payer pays a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaymentTerms {
    pub payer_id: String,
    pub method: ApprovalMethod,
    /// What proves the approval (a passkey assertion); kept with it.
    pub evidence: Option<String>,
    /// For manual capture: how long the funds stay held before they lapse back.
    pub hold_ms: i64,
    /// The sandbox payer of the test helpers: its wallet is covered from the sandbox
    /// by what it lacks (test mode only).
    pub cover_from_sandbox: bool,
    /// Payments without a second factor: at most this many in the past hour, this one
    /// included.
    pub auto_approvals_per_hour: Option<i64>,
}

/// Charges the payer's wallet for a pending session: posted to the merchant under
/// automatic capture, held until `now + hold_ms` under manual capture. Refused with the
/// session's status when it is not payable at `now`.
pub fn plan_payment(
    session: &SessionRecord,
    terms: &PaymentTerms,
    now_ms: i64,
) -> Result<Plan, SessionStatus> {
    let status = session.status_at(now_ms);
    if status != SessionStatus::Pending {
        return Err(status);
    }
    let wallet = AccountRef::wallet(&terms.payer_id, session.book());
    let mut ledger = Vec::new();
    if terms.cover_from_sandbox && !session.livemode {
        ledger.push(LedgerStep::CoverShortfall {
            id: ids::new_id("tr"),
            spec: TransferSpec {
                debit: AccountRef::sandbox(session.currency),
                credit: wallet.clone(),
                amount: session.amount,
                kind: TransferKind::SandboxCredit,
                session_id: None,
                memo: Some("sandbox payer top-up".into()),
                hold_until: None,
            },
        });
    }
    let manual = session.capture_method == CaptureMethod::Manual;
    let charge = ids::new_id("tr");
    ledger.push(LedgerStep::Transfer {
        id: charge.clone(),
        spec: TransferSpec {
            debit: wallet,
            credit: AccountRef::merchant(&session.merchant_id, session.book()),
            amount: session.amount,
            kind: TransferKind::Charge,
            session_id: Some(session.id.clone()),
            memo: None,
            hold_until: manual.then_some(now_ms + terms.hold_ms),
        },
    });
    Ok(Plan {
        session_id: session.id.clone(),
        precondition: Precondition::Pending {
            unexpired_at: Some(now_ms),
            auto_approvals: terms.auto_approvals_per_hour.map(|limit| AutoApprovalCap {
                payer_id: terms.payer_id.clone(),
                merchant_id: session.merchant_id.clone(),
                livemode: session.livemode,
                since_ms: now_ms - HOUR_MS,
                limit,
            }),
            mandate: None,
        },
        ledger,
        change: SessionChange {
            status: SessionStatus::Paid,
            capture_status: manual.then_some(CaptureStatus::Held),
            hold_transfer_id: manual.then_some(charge),
            expires_at: None,
            mandate_id: None,
            mandate_period: None,
            amount_captured: (!manual).then_some(session.amount),
            refunded: None,
            updated_at: now_ms,
        },
        event: SessionEvent::new(
            &session.id,
            Some(SessionStatus::Pending),
            SessionStatus::Paid,
            now_ms,
        ),
        approval: Some(Approval {
            session_id: session.id.clone(),
            payer_id: terms.payer_id.clone(),
            method: terms.method,
            evidence: terms.evidence.clone(),
            created_at: now_ms,
        }),
        mandate_spend: None,
        refund: None,
    })
}

/// Why a payment plan was not written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentRefusal {
    /// The session is no longer payable; it has this status now.
    Closed(SessionStatus),
    /// The payer's hourly cap of payments without a second factor is used up.
    AutoLimitReached,
}

/// Which precondition of a payment failed, told from the session as it now is: a
/// session still payable was refused by the cap.
pub fn payment_refusal(current: &SessionRecord, now_ms: i64) -> PaymentRefusal {
    match current.status_at(now_ms) {
        SessionStatus::Pending => PaymentRefusal::AutoLimitReached,
        status => PaymentRefusal::Closed(status),
    }
}

/// What settling a hold comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settlement {
    /// Nothing is held: the request is refused as it stands.
    NothingHeld,
    /// The hold passed its deadline: it lapses and the request is refused.
    Lapse(Plan),
    /// The funds move to the merchant (capture) or back to the payer (release).
    Settle(Plan),
}

/// What the merchant does with a session's held funds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HoldAction {
    /// Moves the funds to the merchant: all of them, or only `part` (metered use),
    /// the rest going back to the payer in the same plan.
    Capture(Option<PartCapture>),
    /// Gives them all back to the payer.
    Release,
}

/// A capture of less than was held: `amount` (at least 1, less than the session's
/// amount) from the wallet of `payer_id`, who approved the payment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartCapture {
    pub amount: i64,
    pub payer_id: String,
}

/// Captures (all or part) or releases the held funds of a paid manual-capture session.
/// `hold` is the transfer the session names as its hold. A hold is lapsed from its
/// deadline on, whether or not the sweeper came by yet.
pub fn plan_settlement(
    session: &SessionRecord,
    hold: Option<&Transfer>,
    action: &HoldAction,
    now_ms: i64,
) -> Settlement {
    let Some(hold) = hold.filter(|h| {
        h.state == TransferState::Pending && session.capture_status == Some(CaptureStatus::Held)
    }) else {
        return Settlement::NothingHeld;
    };
    if is_due(hold, now_ms) {
        return Settlement::Lapse(plan_lapse(session, &hold.id, now_ms));
    }
    let settled = |to, status, capture_status, event, captured| {
        held_plan(
            session,
            &hold.id,
            to,
            (status, capture_status, event),
            captured,
            now_ms,
        )
    };
    Settlement::Settle(match action {
        HoldAction::Release => settled(
            TransferState::Voided,
            SessionStatus::Cancelled,
            CaptureStatus::Released,
            "session.released",
            0,
        ),
        HoldAction::Capture(None) => settled(
            TransferState::Posted,
            SessionStatus::Paid,
            CaptureStatus::Captured,
            "session.captured",
            session.amount,
        ),
        // The hold is voided and the part charged anew: the ledger shows both, and the
        // payer's wallet gets the rest back as the charge is made.
        HoldAction::Capture(Some(part)) => {
            let mut plan = settled(
                TransferState::Voided,
                SessionStatus::Paid,
                CaptureStatus::Captured,
                "session.captured",
                part.amount,
            );
            plan.ledger.push(LedgerStep::Transfer {
                id: ids::new_id("tr"),
                spec: TransferSpec {
                    debit: AccountRef::wallet(&part.payer_id, session.book()),
                    credit: AccountRef::merchant(&session.merchant_id, session.book()),
                    amount: part.amount,
                    kind: TransferKind::Charge,
                    session_id: Some(session.id.clone()),
                    memo: Some(format!("part of hold {}", hold.id)),
                    hold_until: None,
                },
            });
            plan
        }
    })
}

/// A hold that lapses uncaptured gives the money back to the payer; the session
/// expires.
pub fn plan_lapse(session: &SessionRecord, hold_transfer_id: &str, now_ms: i64) -> Plan {
    held_plan(
        session,
        hold_transfer_id,
        TransferState::Lapsed,
        (
            SessionStatus::Expired,
            CaptureStatus::Released,
            "session.released",
        ),
        0,
        now_ms,
    )
}

/// The lapse of a session's hold when its deadline has passed, so that no read shows
/// funds held past it; `None` when nothing is due.
pub fn plan_lapse_if_due(
    session: &SessionRecord,
    hold: Option<&Transfer>,
    now_ms: i64,
) -> Option<Plan> {
    let hold = hold.filter(|h| {
        h.state == TransferState::Pending
            && session.capture_status == Some(CaptureStatus::Held)
            && is_due(h, now_ms)
    })?;
    Some(plan_lapse(session, &hold.id, now_ms))
}

fn is_due(hold: &Transfer, now_ms: i64) -> bool {
    hold.lapses_at.is_some_and(|deadline| deadline <= now_ms)
}

/// Resolves the hold to `to`, leaving the session in `(status, capture status)` with
/// the event named; `captured` of the amount moved to the merchant, the rest back to
/// the payer (and to the mandate's budget).
fn held_plan(
    session: &SessionRecord,
    hold_transfer_id: &str,
    to: TransferState,
    (status, capture_status, event): (SessionStatus, CaptureStatus, &str),
    captured: i64,
    now_ms: i64,
) -> Plan {
    let given_back = session.amount - captured;
    Plan {
        session_id: session.id.clone(),
        precondition: Precondition::Held {
            hold_transfer_id: hold_transfer_id.to_string(),
        },
        ledger: vec![LedgerStep::Resolve {
            transfer_id: hold_transfer_id.to_string(),
            to,
        }],
        change: SessionChange {
            status,
            capture_status: Some(capture_status),
            hold_transfer_id: None,
            expires_at: None,
            mandate_id: None,
            mandate_period: None,
            amount_captured: (captured > 0).then_some(captured),
            refunded: None,
            updated_at: now_ms,
        },
        event: SessionEvent::named(
            &session.id,
            event,
            Some(SessionStatus::Paid),
            status,
            now_ms,
        ),
        approval: None,
        mandate_spend: give_back(session, given_back),
        refund: None,
    }
}

/// Funds that go back to the payer of a session paid under a mandate go back to the
/// mandate's budget too, in the period the payment counted in.
fn give_back(session: &SessionRecord, amount: i64) -> Option<MandateSpend> {
    let mandate_id = session.mandate_id.as_ref().filter(|_| amount > 0)?;
    Some(MandateSpend {
        mandate_id: mandate_id.clone(),
        period_start: session.mandate_period,
        amount: -amount,
    })
}

/// Why a refund was not planned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundRefusal {
    /// No money moved to the merchant: the session is not paid, or its funds are
    /// held (capture or release them instead).
    NotCaptured,
    /// Everything captured was refunded already.
    NothingLeft,
    /// More than what was captured and not yet refunded, which is `left`.
    Exceeds { left: i64 },
    /// The session has [`MAX_REFUNDS_PER_SESSION`] refunds already.
    TooMany,
}

/// Gives `amount` (all that is left when `None`) of a captured payment back to its
/// payer, `payer_id`, from the merchant's balance. The session stays `paid`.
pub fn plan_refund(
    session: &SessionRecord,
    payer_id: &str,
    amount: Option<i64>,
    reason: Option<RefundReason>,
    now_ms: i64,
) -> Result<Plan, RefundRefusal> {
    let captured = match session.amount_captured {
        Some(captured) if session.status == SessionStatus::Paid => captured,
        _ => return Err(RefundRefusal::NotCaptured),
    };
    let left = captured - session.amount_refunded;
    if left <= 0 {
        return Err(RefundRefusal::NothingLeft);
    }
    let amount = amount.unwrap_or(left);
    if amount > left {
        return Err(RefundRefusal::Exceeds { left });
    }
    if session.refund_count >= MAX_REFUNDS_PER_SESSION {
        return Err(RefundRefusal::TooMany);
    }
    let transfer_id = ids::new_id("tr");
    Ok(Plan {
        session_id: session.id.clone(),
        precondition: Precondition::Refundable { amount },
        ledger: vec![LedgerStep::Transfer {
            id: transfer_id.clone(),
            spec: TransferSpec {
                debit: AccountRef::merchant(&session.merchant_id, session.book()),
                credit: AccountRef::wallet(payer_id, session.book()),
                amount,
                kind: TransferKind::Refund,
                session_id: Some(session.id.clone()),
                memo: None,
                hold_until: None,
            },
        }],
        change: SessionChange {
            status: session.status,
            capture_status: session.capture_status,
            hold_transfer_id: None,
            expires_at: None,
            mandate_id: None,
            mandate_period: None,
            amount_captured: None,
            refunded: Some(amount),
            updated_at: now_ms,
        },
        event: SessionEvent::named(
            &session.id,
            "session.refunded",
            Some(session.status),
            session.status,
            now_ms,
        ),
        approval: None,
        mandate_spend: give_back(session, amount),
        refund: Some(RefundRecord {
            id: ids::new_id("ref"),
            session_id: session.id.clone(),
            amount,
            currency: session.currency,
            reason,
            transfer_id,
            created_at: now_ms,
        }),
    })
}

/// The ways a pending session closes without money moving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// The merchant cancels, or the payer declines.
    Cancel,
    /// A test helper fails it.
    Fail,
    /// Its expiry passed (or a test helper expires it early).
    Expire,
}

impl Closing {
    pub fn status(self) -> SessionStatus {
        match self {
            Closing::Cancel => SessionStatus::Cancelled,
            Closing::Fail => SessionStatus::Failed,
            Closing::Expire => SessionStatus::Expired,
        }
    }
}

/// Closes a pending session. Only expiry applies to a session whose expiry has passed;
/// an early expiry moves `expiresAt` to now. `None` when the session cannot close so.
pub fn plan_closing(session: &SessionRecord, closing: Closing, now_ms: i64) -> Option<Plan> {
    let expire = closing == Closing::Expire;
    if session.status != SessionStatus::Pending || (!expire && now_ms >= session.expires_at) {
        return None;
    }
    let status = closing.status();
    Some(Plan {
        session_id: session.id.clone(),
        precondition: Precondition::Pending {
            unexpired_at: (!expire).then_some(now_ms),
            auto_approvals: None,
            mandate: None,
        },
        ledger: Vec::new(),
        change: SessionChange {
            status,
            capture_status: session.capture_status,
            hold_transfer_id: None,
            expires_at: expire.then_some(session.expires_at.min(now_ms)),
            mandate_id: None,
            mandate_period: None,
            amount_captured: None,
            refunded: None,
            updated_at: now_ms,
        },
        event: SessionEvent::new(&session.id, Some(SessionStatus::Pending), status, now_ms),
        approval: None,
        mandate_spend: None,
        refund: None,
    })
}

/// Credits a voucher to a payer's wallet and marks it used, once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redemption {
    /// Written only while the voucher is still unused.
    pub voucher_id: String,
    pub payer_id: String,
    pub at: i64,
    pub transfer_id: String,
    pub credit: TransferSpec,
}

/// Plans a voucher's redemption; `None` when it was redeemed already.
pub fn plan_redemption(voucher: &Voucher, payer_id: &str, now_ms: i64) -> Option<Redemption> {
    if voucher.redeemed_by.is_some() {
        return None;
    }
    Some(Redemption {
        voucher_id: voucher.id.clone(),
        payer_id: payer_id.to_string(),
        at: now_ms,
        transfer_id: ids::new_id("tr"),
        credit: TransferSpec {
            debit: AccountRef::vouchers(voucher.book),
            credit: AccountRef::wallet(payer_id, voucher.book),
            amount: voucher.amount,
            kind: TransferKind::Voucher,
            session_id: None,
            memo: Some(format!("voucher {}", voucher.id)),
            hold_until: None,
        },
    })
}

/// The sweeper's lapse of up to `batch` holds past their deadline: the holds of
/// sessions lapse with their sessions' expiry, all in one transaction; a hold that keeps
/// no session's funds (the service makes none, a direct use of the ledger may) lapses
/// in a transaction of its own. Returns how many holds lapsed.
pub async fn lapse_due<S>(store: &S, now_ms: i64, batch: i64) -> Result<usize, StoreError>
where
    S: LedgerStore + ?Sized,
{
    let mut plans = Vec::new();
    let mut alone = 0;
    for (hold, session) in store.due_holds(now_ms, batch).await? {
        match session.and_then(|s| plan_lapse_if_due(&s, Some(&hold), now_ms)) {
            Some(plan) => plans.push(plan),
            // A hold that keeps no session's funds lapses alone.
            None => match store
                .resolve_transfer(&hold.id, TransferState::Lapsed, now_ms)
                .await
            {
                Ok(_) => alone += 1,
                // Resolved meanwhile by someone else: nothing is due any more.
                Err(StoreError::Ledger(LedgerError::NotPending)) => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(alone + store.apply_plans(&plans).await?)
}

/// The sweeper's expiry of up to `batch` pending sessions past their expiry, in one
/// transaction. Returns how many expired.
pub async fn expire_due<S>(store: &S, now_ms: i64, batch: i64) -> Result<usize, StoreError>
where
    S: SessionStore + LedgerStore + ?Sized,
{
    let plans: Vec<Plan> = store
        .due_sessions(now_ms, batch)
        .await?
        .iter()
        .filter(|s| s.status_at(now_ms) == SessionStatus::Expired)
        .filter_map(|s| plan_closing(s, Closing::Expire, now_ms))
        .collect();
    store.apply_plans(&plans).await
}

/// The session a plan's outcome names, as it now is; `None` when it is gone.
pub fn current<T>(outcome: PlanOutcome<T>) -> Option<T> {
    match outcome {
        PlanOutcome::Applied(t) | PlanOutcome::Stale(t) => Some(t),
        PlanOutcome::NotFound => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ledger::AccountKind;
    use crate::domain::ledger::Book;
    use walleot_api::Currency;

    const NOW: i64 = 1_000_000;

    fn session(capture_method: CaptureMethod) -> SessionRecord {
        SessionRecord {
            id: "sess_1".into(),
            merchant_id: "mer_1".into(),
            livemode: false,
            amount: 250,
            currency: Currency::USD,
            description: None,
            status: SessionStatus::Pending,
            created_at: NOW - 1000,
            expires_at: NOW + 60_000,
            updated_at: NOW - 1000,
            capture_method,
            capture_status: None,
            metadata: Default::default(),
            customer: None,
            mandate_id: None,
            mandate_period: None,
            amount_captured: None,
            amount_refunded: 0,
            refund_count: 0,
        }
    }

    fn terms() -> PaymentTerms {
        PaymentTerms {
            payer_id: "payer_1".into(),
            method: ApprovalMethod::Passkey,
            evidence: Some("assertion".into()),
            hold_ms: 5_000,
            cover_from_sandbox: false,
            auto_approvals_per_hour: None,
        }
    }

    fn held(lapses_at: i64) -> (SessionRecord, Transfer) {
        let mut s = session(CaptureMethod::Manual);
        s.status = SessionStatus::Paid;
        s.capture_status = Some(CaptureStatus::Held);
        let hold = Transfer {
            id: "tr_hold".into(),
            debit_account: "acct_w".into(),
            credit_account: "acct_m".into(),
            amount: 250,
            book: Book::test(Currency::USD),
            state: TransferState::Pending,
            kind: TransferKind::Charge,
            session_id: Some(s.id.clone()),
            memo: None,
            created_at: NOW - 100,
            lapses_at: Some(lapses_at),
            resolved_at: None,
        };
        (s, hold)
    }

    fn transfers(plan: &Plan) -> Vec<&TransferSpec> {
        plan.ledger
            .iter()
            .filter_map(|step| match step {
                LedgerStep::Transfer { spec, .. } => Some(spec),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn automatic_capture_posts_the_charge_to_the_merchant() {
        let plan = plan_payment(&session(CaptureMethod::Automatic), &terms(), NOW).unwrap();
        let [charge] = transfers(&plan)[..] else {
            panic!("one transfer: {plan:?}")
        };
        assert_eq!(
            (charge.debit.kind, charge.credit.kind, charge.amount),
            (AccountKind::Wallet, AccountKind::Merchant, 250)
        );
        assert_eq!(charge.debit.owner_id, "payer_1");
        assert_eq!(charge.kind, TransferKind::Charge);
        assert_eq!(charge.session_id.as_deref(), Some("sess_1"));
        assert_eq!(charge.hold_until, None);
        assert_eq!(plan.ledger.len(), 1, "no sandbox cover unless asked");
        assert_eq!(
            (plan.change.status, plan.change.capture_status),
            (SessionStatus::Paid, None)
        );
        assert_eq!(plan.change.hold_transfer_id, None);
        assert_eq!(plan.event.kind, "session.paid");
        assert_eq!(plan.event.from_status, Some(SessionStatus::Pending));
        let approval = plan.approval.unwrap();
        assert_eq!(
            (approval.method, approval.evidence.as_deref()),
            (ApprovalMethod::Passkey, Some("assertion"))
        );
        assert_eq!(
            plan.precondition,
            Precondition::Pending {
                unexpired_at: Some(NOW),
                auto_approvals: None,
                mandate: None
            }
        );
    }

    #[test]
    fn manual_capture_holds_the_funds_until_the_deadline() {
        let plan = plan_payment(&session(CaptureMethod::Manual), &terms(), NOW).unwrap();
        let LedgerStep::Transfer { id, spec } = &plan.ledger[0] else {
            panic!("{plan:?}")
        };
        assert_eq!(spec.hold_until, Some(NOW + 5_000));
        assert_eq!(
            (plan.change.status, plan.change.capture_status),
            (SessionStatus::Paid, Some(CaptureStatus::Held))
        );
        assert_eq!(plan.change.hold_transfer_id.as_ref(), Some(id));
    }

    #[test]
    fn the_sandbox_payer_is_covered_before_the_charge_in_test_mode_only() {
        let sandbox = PaymentTerms {
            cover_from_sandbox: true,
            method: ApprovalMethod::TestHelper,
            evidence: None,
            ..terms()
        };
        let plan = plan_payment(&session(CaptureMethod::Automatic), &sandbox, NOW).unwrap();
        let LedgerStep::CoverShortfall { spec, .. } = &plan.ledger[0] else {
            panic!("the cover comes first: {plan:?}")
        };
        assert_eq!(
            (spec.debit.kind, spec.credit.kind, spec.amount),
            (AccountKind::Sandbox, AccountKind::Wallet, 250)
        );
        assert_eq!(spec.kind, TransferKind::SandboxCredit);
        assert!(matches!(plan.ledger[1], LedgerStep::Transfer { .. }));
        let live = SessionRecord {
            livemode: true,
            ..session(CaptureMethod::Automatic)
        };
        let plan = plan_payment(&live, &sandbox, NOW).unwrap();
        assert_eq!(
            plan.ledger.len(),
            1,
            "live money is never covered: {plan:?}"
        );
    }

    #[test]
    fn payments_without_a_second_factor_carry_the_hourly_cap() {
        let auto = PaymentTerms {
            method: ApprovalMethod::Auto,
            auto_approvals_per_hour: Some(20),
            ..terms()
        };
        let plan = plan_payment(&session(CaptureMethod::Automatic), &auto, NOW).unwrap();
        assert_eq!(
            plan.precondition,
            Precondition::Pending {
                unexpired_at: Some(NOW),
                auto_approvals: Some(AutoApprovalCap {
                    payer_id: "payer_1".into(),
                    merchant_id: "mer_1".into(),
                    livemode: false,
                    since_ms: NOW - HOUR_MS,
                    limit: 20,
                }),
                mandate: None,
            }
        );
        // Refused while still payable: the cap; otherwise the session's own status.
        let pending = session(CaptureMethod::Automatic);
        assert_eq!(
            payment_refusal(&pending, NOW),
            PaymentRefusal::AutoLimitReached
        );
        let paid = SessionRecord {
            status: SessionStatus::Paid,
            ..pending.clone()
        };
        assert_eq!(
            payment_refusal(&paid, NOW),
            PaymentRefusal::Closed(SessionStatus::Paid)
        );
        assert_eq!(
            payment_refusal(&pending, pending.expires_at),
            PaymentRefusal::Closed(SessionStatus::Expired)
        );
    }

    #[test]
    fn only_a_pending_unexpired_session_is_payable() {
        let s = session(CaptureMethod::Automatic);
        assert_eq!(
            plan_payment(&s, &terms(), s.expires_at),
            Err(SessionStatus::Expired)
        );
        let cancelled = SessionRecord {
            status: SessionStatus::Cancelled,
            ..s
        };
        assert_eq!(
            plan_payment(&cancelled, &terms(), NOW),
            Err(SessionStatus::Cancelled)
        );
    }

    #[test]
    fn a_capture_before_the_deadline_posts_the_hold() {
        let (s, hold) = held(NOW + 1);
        let Settlement::Settle(plan) =
            plan_settlement(&s, Some(&hold), &HoldAction::Capture(None), NOW)
        else {
            panic!("settles")
        };
        assert_eq!(
            plan.ledger,
            vec![LedgerStep::Resolve {
                transfer_id: "tr_hold".into(),
                to: TransferState::Posted
            }]
        );
        assert_eq!(
            (plan.change.status, plan.change.capture_status),
            (SessionStatus::Paid, Some(CaptureStatus::Captured))
        );
        assert_eq!(plan.event.kind, "session.captured");
        assert_eq!(
            plan.precondition,
            Precondition::Held {
                hold_transfer_id: "tr_hold".into()
            }
        );
    }

    #[test]
    fn a_part_capture_voids_the_hold_charges_the_part_and_gives_the_rest_back() {
        let (mut s, hold) = held(NOW + 1);
        s.mandate_id = Some("mdt_1".into());
        s.mandate_period = Some(NOW - 5000);
        let part = PartCapture {
            amount: 100,
            payer_id: "payer_1".into(),
        };
        let Settlement::Settle(plan) =
            plan_settlement(&s, Some(&hold), &HoldAction::Capture(Some(part)), NOW)
        else {
            panic!("settles")
        };
        assert_eq!(
            plan.ledger[0],
            LedgerStep::Resolve {
                transfer_id: "tr_hold".into(),
                to: TransferState::Voided
            }
        );
        let charged = transfers(&plan);
        assert_eq!(charged.len(), 1);
        assert_eq!(
            (&charged[0].debit, &charged[0].credit, charged[0].amount),
            (
                &AccountRef::wallet("payer_1", s.book()),
                &AccountRef::merchant("mer_1", s.book()),
                100
            )
        );
        assert_eq!(charged[0].hold_until, None, "posted at once");
        assert_eq!(
            (
                plan.change.status,
                plan.change.capture_status,
                plan.change.amount_captured
            ),
            (
                SessionStatus::Paid,
                Some(CaptureStatus::Captured),
                Some(100)
            )
        );
        assert_eq!(
            plan.mandate_spend,
            Some(MandateSpend {
                mandate_id: "mdt_1".into(),
                period_start: Some(NOW - 5000),
                amount: -150,
            })
        );
    }

    #[test]
    fn a_refund_moves_what_is_left_from_the_merchant_to_the_payer() {
        let mut s = session(CaptureMethod::Automatic);
        s.status = SessionStatus::Paid;
        s.amount_captured = Some(250);
        s.amount_refunded = 100;
        let plan = plan_refund(&s, "payer_1", None, Some(RefundReason::Duplicate), NOW).unwrap();
        assert_eq!(plan.precondition, Precondition::Refundable { amount: 150 });
        let moved = transfers(&plan);
        assert_eq!(
            (
                &moved[0].debit,
                &moved[0].credit,
                moved[0].amount,
                moved[0].kind
            ),
            (
                &AccountRef::merchant("mer_1", s.book()),
                &AccountRef::wallet("payer_1", s.book()),
                150,
                TransferKind::Refund
            )
        );
        let refund = plan.refund.clone().unwrap();
        assert_eq!(
            (refund.amount, refund.reason),
            (150, Some(RefundReason::Duplicate))
        );
        let after = plan.change.applied_to(&s);
        assert_eq!(
            (after.status, after.amount_refunded, after.refund_count),
            (SessionStatus::Paid, 250, 1)
        );
        assert_eq!(plan.event.kind, "session.refunded");
        assert_eq!(
            plan_refund(&s, "payer_1", Some(151), None, NOW),
            Err(RefundRefusal::Exceeds { left: 150 })
        );
        assert_eq!(
            plan_refund(&after, "payer_1", None, None, NOW),
            Err(RefundRefusal::NothingLeft)
        );
        let crowded = SessionRecord {
            refund_count: MAX_REFUNDS_PER_SESSION,
            ..s.clone()
        };
        assert_eq!(
            plan_refund(&crowded, "payer_1", Some(1), None, NOW),
            Err(RefundRefusal::TooMany)
        );
    }

    #[test]
    fn only_captured_money_is_refunded() {
        let (held, _) = held(NOW + 1);
        let pending = session(CaptureMethod::Automatic);
        for s in [held, pending] {
            assert_eq!(
                plan_refund(&s, "payer_1", None, None, NOW),
                Err(RefundRefusal::NotCaptured)
            );
        }
    }

    #[test]
    fn a_capture_at_or_after_the_deadline_lapses_the_hold_instead() {
        let (s, hold) = held(NOW);
        let Settlement::Lapse(plan) =
            plan_settlement(&s, Some(&hold), &HoldAction::Capture(None), NOW)
        else {
            panic!("lapses")
        };
        assert_eq!(
            plan,
            lapse_without_ids(plan_lapse(&s, "tr_hold", NOW), &plan)
        );
        assert_eq!(
            (plan.change.status, plan.change.capture_status),
            (SessionStatus::Expired, Some(CaptureStatus::Released))
        );
    }

    /// `other` with the event id of `plan`, which is random.
    fn lapse_without_ids(mut other: Plan, plan: &Plan) -> Plan {
        other.event.id = plan.event.id.clone();
        other
    }

    #[test]
    fn a_release_voids_the_hold_and_cancels_the_session() {
        let (s, hold) = held(NOW + 1);
        let Settlement::Settle(plan) = plan_settlement(&s, Some(&hold), &HoldAction::Release, NOW)
        else {
            panic!("settles")
        };
        assert!(matches!(
            &plan.ledger[..],
            [LedgerStep::Resolve {
                to: TransferState::Voided,
                ..
            }]
        ));
        assert_eq!(
            (plan.change.status, plan.change.capture_status),
            (SessionStatus::Cancelled, Some(CaptureStatus::Released))
        );
        assert_eq!(
            (plan.event.kind.as_str(), plan.event.from_status),
            ("session.released", Some(SessionStatus::Paid))
        );
    }

    #[test]
    fn nothing_is_settled_when_nothing_is_held() {
        let (s, hold) = held(NOW + 1);
        let captured = SessionRecord {
            capture_status: Some(CaptureStatus::Captured),
            ..s.clone()
        };
        assert_eq!(
            plan_settlement(&captured, Some(&hold), &HoldAction::Capture(None), NOW),
            Settlement::NothingHeld
        );
        let posted = Transfer {
            state: TransferState::Posted,
            ..hold
        };
        assert_eq!(
            plan_settlement(&s, Some(&posted), &HoldAction::Release, NOW),
            Settlement::NothingHeld
        );
        assert_eq!(
            plan_settlement(
                &session(CaptureMethod::Automatic),
                None,
                &HoldAction::Capture(None),
                NOW
            ),
            Settlement::NothingHeld
        );
    }

    #[test]
    fn a_hold_lapses_from_its_deadline_and_the_session_expires() {
        let (s, hold) = held(NOW);
        assert_eq!(plan_lapse_if_due(&s, Some(&hold), NOW - 1), None);
        let plan = plan_lapse_if_due(&s, Some(&hold), NOW).unwrap();
        assert_eq!(
            plan.ledger,
            vec![LedgerStep::Resolve {
                transfer_id: "tr_hold".into(),
                to: TransferState::Lapsed
            }]
        );
        assert_eq!(
            (plan.change.status, plan.change.capture_status),
            (SessionStatus::Expired, Some(CaptureStatus::Released))
        );
        assert_eq!(
            (
                plan.event.kind.as_str(),
                plan.event.from_status,
                plan.event.to_status
            ),
            (
                "session.released",
                Some(SessionStatus::Paid),
                SessionStatus::Expired
            )
        );
        assert_eq!(
            plan.precondition,
            Precondition::Held {
                hold_transfer_id: "tr_hold".into()
            }
        );
        let captured = SessionRecord {
            capture_status: Some(CaptureStatus::Captured),
            ..s
        };
        assert_eq!(plan_lapse_if_due(&captured, Some(&hold), NOW), None);
    }

    #[test]
    fn expiry_applies_to_any_pending_session_and_moves_the_expiry_to_now() {
        let s = session(CaptureMethod::Automatic);
        let early = plan_closing(&s, Closing::Expire, NOW).unwrap();
        assert_eq!(early.change.status, SessionStatus::Expired);
        assert_eq!(early.change.expires_at, Some(NOW));
        assert_eq!(early.event.kind, "session.expired");
        assert_eq!(
            early.precondition,
            Precondition::Pending {
                unexpired_at: None,
                auto_approvals: None,
                mandate: None
            }
        );
        let overdue = plan_closing(&s, Closing::Expire, s.expires_at + 10).unwrap();
        assert_eq!(overdue.change.expires_at, Some(s.expires_at));
        let paid = SessionRecord {
            status: SessionStatus::Paid,
            ..s
        };
        assert_eq!(plan_closing(&paid, Closing::Expire, NOW), None);
    }

    #[test]
    fn cancel_and_fail_need_a_session_that_has_not_expired() {
        let s = session(CaptureMethod::Automatic);
        let cancel = plan_closing(&s, Closing::Cancel, NOW).unwrap();
        assert_eq!(
            (cancel.change.status, cancel.event.kind.as_str()),
            (SessionStatus::Cancelled, "session.cancelled")
        );
        assert_eq!(cancel.change.expires_at, None);
        assert_eq!(
            cancel.precondition,
            Precondition::Pending {
                unexpired_at: Some(NOW),
                auto_approvals: None,
                mandate: None
            }
        );
        assert!(cancel.ledger.is_empty() && cancel.approval.is_none());
        assert_eq!(
            plan_closing(&s, Closing::Fail, NOW).unwrap().event.kind,
            "session.failed"
        );
        assert_eq!(plan_closing(&s, Closing::Fail, s.expires_at), None);
    }

    #[test]
    fn a_voucher_credits_its_own_book_once() {
        let voucher = Voucher {
            id: "vch_1".into(),
            code_hash: "hash".into(),
            amount: 500,
            book: Book::new(Currency::USD, true),
            created_at: 0,
            redeemed_by: None,
            redeemed_at: None,
        };
        let plan = plan_redemption(&voucher, "payer_1", NOW).unwrap();
        assert_eq!(
            (plan.voucher_id.as_str(), plan.payer_id.as_str(), plan.at),
            ("vch_1", "payer_1", NOW)
        );
        assert_eq!(
            plan.credit.debit,
            AccountRef::vouchers(Book::new(Currency::USD, true))
        );
        assert_eq!(
            plan.credit.credit,
            AccountRef::wallet("payer_1", Book::new(Currency::USD, true))
        );
        assert_eq!(
            (plan.credit.amount, plan.credit.kind),
            (500, TransferKind::Voucher)
        );
        assert_eq!(plan.credit.memo.as_deref(), Some("voucher vch_1"));
        let used = Voucher {
            redeemed_by: Some("payer_2".into()),
            ..voucher
        };
        assert_eq!(plan_redemption(&used, "payer_1", NOW), None);
    }
}
