//! Wallets: payers' balances and top-ups, what a checkout may do for a payer, and the
//! payment of sessions through the ledger.

use super::ids;
use super::ledger::{
    verify, Account, AccountKind, AccountRef, Book, Mismatch, TransferKind, TransferSpec,
};
use super::payers::{ApprovalMethod, Payer, Voucher};
use super::payments::{self, PaymentRefusal, PaymentTerms, HOUR_MS};
use super::sessions::SessionRecord;
use super::{Clock, DomainError};
use crate::domain::ports::{HistoryEntry, PlanOutcome, Store};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use walleot_api::{Currency, SessionStatus};

#[derive(Debug, Clone)]
pub struct WalletPolicy {
    /// Sandbox credits a new test wallet starts with, and each "add test credits" adds,
    /// in major units (10 = 10.00 USD, 10 JPY).
    pub sandbox_credit_major: i64,
    /// Second-factor failures in a row before approvals lock.
    pub max_failed_attempts: i64,
    pub lock_ms: i64,
    /// How long the funds of an approved manual-capture session stay held before they
    /// return to the payer uncaptured.
    pub hold_ms: i64,
    /// Payments without a second factor (auto-approved, or one click on "Pay") that a
    /// payer makes to one merchant in one mode within an hour; beyond it each takes the
    /// second factor, so that a merchant cannot drain a wallet in small charges.
    pub auto_approvals_per_hour: i64,
}

impl Default for WalletPolicy {
    fn default() -> Self {
        WalletPolicy {
            sandbox_credit_major: 10,
            max_failed_attempts: 5,
            lock_ms: 15 * 60 * 1000,
            hold_ms: crate::domain::clock::DAY_MS,
            auto_approvals_per_hour: 20,
        }
    }
}

/// The auto-approve threshold when the payer has set none: 0.20 in the currency
/// (20 cents, 0 yen, 200 fils).
pub fn default_threshold(currency: Currency) -> i64 {
    currency.minor_per_major() / 5
}

/// What a checkout page can do for a signed-in payer and a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CheckoutStep {
    /// At or under the threshold, funds available, within the hourly number of such
    /// payments: paid without a second factor.
    AutoApprove,
    /// Above the threshold, or beyond the hourly number of payments without a second
    /// factor: one tap on a second factor.
    NeedsApproval,
    /// Approvals are locked after failed attempts, until this instant.
    Locked {
        until: i64,
    },
    InsufficientFunds {
        available: i64,
    },
    /// The session is not pending.
    Closed(SessionStatus),
}

/// A checkout's view of a payer and a session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub step: CheckoutStep,
    /// The wallet's available balance in the session's currency and mode.
    pub available: i64,
    /// The payer's auto-approve threshold in the session's currency.
    pub threshold: i64,
    /// Within the threshold, but the hourly number of payments without a second factor
    /// to this merchant is used up.
    pub auto_limit_reached: bool,
}

/// The answer to a payment without a second factor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AutoPayment {
    Paid(Box<SessionRecord>),
    /// The hourly number of such payments to this merchant is used up; nothing moved.
    LimitReached,
}

#[derive(Clone)]
pub struct Wallets {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    policy: WalletPolicy,
}

/// The payer the test helpers act as, one per merchant.
pub fn sandbox_payer_id(merchant_id: &str) -> String {
    format!("payer_sandbox_{merchant_id}")
}

impl Wallets {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, policy: WalletPolicy) -> Self {
        Wallets {
            store,
            clock,
            policy,
        }
    }

    /// How long manual-capture funds stay held before they lapse back to the payer.
    pub fn hold_ms(&self) -> i64 {
        self.policy.hold_ms
    }

    pub fn policy(&self) -> &WalletPolicy {
        &self.policy
    }

    /// A new payer, whose test wallet starts with sandbox credits.
    pub async fn register(&self) -> Result<Payer, DomainError> {
        let now = self.clock.now_ms();
        let payer = Payer {
            id: ids::new_id("payer"),
            created_at: now,
            failed_attempts: 0,
            locked_until: 0,
        };
        self.store.insert_payer(&payer).await?;
        if self.policy.sandbox_credit_major > 0 {
            self.add_test_credits(&payer.id, Currency::USD).await?;
        }
        Ok(payer)
    }

    pub async fn payer(&self, id: &str) -> Result<Option<Payer>, DomainError> {
        Ok(self.store.get_payer(id).await?)
    }

    /// Sandbox credits into the payer's test wallet.
    pub async fn add_test_credits(
        &self,
        payer_id: &str,
        currency: Currency,
    ) -> Result<i64, DomainError> {
        let amount = self.policy.sandbox_credit_major * currency.minor_per_major();
        self.store
            .transfer(
                &TransferSpec {
                    debit: AccountRef::sandbox(currency),
                    credit: AccountRef::wallet(payer_id, Book::test(currency)),
                    amount,
                    kind: TransferKind::SandboxCredit,
                    session_id: None,
                    memo: Some("sandbox credits".into()),
                    hold_until: None,
                },
                self.clock.now_ms(),
            )
            .await?;
        Ok(amount)
    }

    pub async fn balances(&self, payer_id: &str) -> Result<Vec<Account>, DomainError> {
        Ok(self
            .store
            .accounts_of(AccountKind::Wallet, payer_id)
            .await?)
    }

    pub async fn history(&self, payer_id: &str) -> Result<Vec<HistoryEntry>, DomainError> {
        Ok(self.store.wallet_history(payer_id, 50).await?)
    }

    pub async fn threshold(&self, payer_id: &str, currency: Currency) -> Result<i64, DomainError> {
        let set = self.store.thresholds(payer_id).await?;
        Ok(set
            .into_iter()
            .find(|(c, _)| *c == currency)
            .map(|(_, amount)| amount)
            .unwrap_or_else(|| default_threshold(currency)))
    }

    /// Sets the auto-approve threshold, in minor units, between 0 and 1,000 major units.
    pub async fn set_threshold(
        &self,
        payer_id: &str,
        currency: Currency,
        amount: i64,
    ) -> Result<(), DomainError> {
        let max = 1000 * currency.minor_per_major();
        if !(0..=max).contains(&amount) {
            return Err(DomainError::invalid(
                "threshold",
                format!("must be between 0 and {}", currency.format_amount(max)),
            ));
        }
        Ok(self.store.set_threshold(payer_id, currency, amount).await?)
    }

    /// What the checkout may do for this payer and session.
    pub async fn step(
        &self,
        payer: &Payer,
        session: &SessionRecord,
    ) -> Result<CheckoutStep, DomainError> {
        Ok(self.assess(payer, session).await?.step)
    }

    /// The step with the figures a checkout shows beside it, read once.
    pub async fn assess(
        &self,
        payer: &Payer,
        session: &SessionRecord,
    ) -> Result<Assessment, DomainError> {
        let now = self.clock.now_ms();
        let available = self
            .balances(&payer.id)
            .await?
            .iter()
            .find(|a| a.book == session.book())
            .map(Account::available)
            .unwrap_or(0);
        let threshold = self.threshold(&payer.id, session.currency).await?;
        let status = session.status_at(now);
        let payable = status == SessionStatus::Pending && available >= session.amount;
        let auto_limit_reached = payable
            && session.amount <= threshold
            && self
                .store
                .auto_approvals_since(
                    &payer.id,
                    &session.merchant_id,
                    session.livemode,
                    now - HOUR_MS,
                )
                .await?
                >= self.policy.auto_approvals_per_hour;
        let step = if status != SessionStatus::Pending {
            CheckoutStep::Closed(status)
        } else if available < session.amount {
            CheckoutStep::InsufficientFunds { available }
        } else if session.amount <= threshold && !auto_limit_reached {
            CheckoutStep::AutoApprove
        } else if payer.is_locked(now) {
            CheckoutStep::Locked {
                until: payer.locked_until,
            }
        } else {
            CheckoutStep::NeedsApproval
        };
        Ok(Assessment {
            step,
            available,
            threshold,
            auto_limit_reached,
        })
    }

    /// Pays the session without a second factor, within the payer's hourly number of
    /// such payments to its merchant, counted in the payment's own transaction. The
    /// caller has checked the threshold; `evidence` says what the payer did.
    pub async fn pay_without_factor(
        &self,
        session: &SessionRecord,
        payer_id: &str,
        evidence: String,
    ) -> Result<AutoPayment, DomainError> {
        let terms = PaymentTerms {
            payer_id: payer_id.to_string(),
            method: ApprovalMethod::Auto,
            evidence: Some(evidence),
            hold_ms: self.policy.hold_ms,
            cover_from_sandbox: false,
            auto_approvals_per_hour: Some(self.policy.auto_approvals_per_hour),
        };
        match self.charge(session, &terms).await? {
            Ok(paid) => Ok(AutoPayment::Paid(Box::new(paid))),
            Err(PaymentRefusal::AutoLimitReached) => Ok(AutoPayment::LimitReached),
            Err(PaymentRefusal::Closed(status)) => Err(DomainError::Closed(status)),
        }
    }

    /// Charges the payer's wallet for the session as read, recording how it was
    /// approved; a session changed meanwhile is refused as it now stands.
    pub async fn pay(
        &self,
        session: &SessionRecord,
        payer_id: &str,
        method: ApprovalMethod,
        evidence: Option<String>,
    ) -> Result<SessionRecord, DomainError> {
        let terms = PaymentTerms {
            payer_id: payer_id.to_string(),
            method,
            evidence,
            hold_ms: self.policy.hold_ms,
            cover_from_sandbox: false,
            auto_approvals_per_hour: None,
        };
        closed_unless_paid(self.charge(session, &terms).await?)
    }

    /// Plans the payment from `session` as read and has the store write it, unless the
    /// session changed meanwhile or the hourly cap is used up.
    async fn charge(
        &self,
        session: &SessionRecord,
        terms: &PaymentTerms,
    ) -> Result<Result<SessionRecord, PaymentRefusal>, DomainError> {
        let now = self.clock.now_ms();
        let plan = match payments::plan_payment(session, terms, now) {
            Ok(plan) => plan,
            Err(status) => return Ok(Err(PaymentRefusal::Closed(status))),
        };
        match self.store.apply_plan(&plan).await? {
            PlanOutcome::Applied(paid) => Ok(Ok(paid)),
            PlanOutcome::Stale(current) => Ok(Err(payments::payment_refusal(&current, now))),
            PlanOutcome::NotFound => Err(DomainError::NotFound("no such payment".into())),
        }
    }

    /// Pays a test session from the merchant's sandbox payer, topped up from sandbox
    /// funds as needed in the payment's own transaction: the path of a real payment,
    /// without a browser.
    pub async fn pay_as_sandbox_payer(
        &self,
        session: &SessionRecord,
    ) -> Result<SessionRecord, DomainError> {
        let payer_id = sandbox_payer_id(&session.merchant_id);
        if self.store.get_payer(&payer_id).await?.is_none() {
            let payer = Payer {
                id: payer_id.clone(),
                created_at: self.clock.now_ms(),
                failed_attempts: 0,
                locked_until: 0,
            };
            // Two racing first payments may both try; one insert suffices.
            if let Err(e) = self.store.insert_payer(&payer).await {
                if self.store.get_payer(&payer_id).await?.is_none() {
                    return Err(e.into());
                }
            }
        }
        let terms = PaymentTerms {
            payer_id,
            method: ApprovalMethod::TestHelper,
            evidence: None,
            hold_ms: self.policy.hold_ms,
            cover_from_sandbox: true,
            auto_approvals_per_hour: None,
        };
        closed_unless_paid(self.charge(session, &terms).await?)
    }

    /// Counts a failed second factor; returns the payer as it now stands.
    pub async fn note_failed_attempt(&self, payer_id: &str) -> Result<Payer, DomainError> {
        Ok(self
            .store
            .note_failed_attempt(
                payer_id,
                self.clock.now_ms(),
                self.policy.max_failed_attempts,
                self.policy.lock_ms,
            )
            .await?)
    }

    pub async fn clear_failed_attempts(&self, payer_id: &str) -> Result<(), DomainError> {
        Ok(self.store.clear_failed_attempts(payer_id).await?)
    }

    /// Creates `count` vouchers and returns each with its code, shown only now.
    pub async fn create_vouchers(
        &self,
        amount: i64,
        currency: Currency,
        livemode: bool,
        count: usize,
    ) -> Result<Vec<(Voucher, String)>, DomainError> {
        let amount = super::money::Amount::try_from(amount)?.minor();
        if !(1..=10_000).contains(&count) {
            return Err(DomainError::invalid("count", "must be between 1 and 10000"));
        }
        let now = self.clock.now_ms();
        let made: Vec<_> = (0..count)
            .map(|_| {
                let code = voucher_code();
                let voucher = Voucher {
                    id: ids::new_id("vch"),
                    code_hash: voucher_hash(&code),
                    amount,
                    book: Book::new(currency, livemode),
                    created_at: now,
                    redeemed_by: None,
                    redeemed_at: None,
                };
                (voucher, code)
            })
            .collect();
        let vouchers: Vec<_> = made.iter().map(|(v, _)| v.clone()).collect();
        self.store.insert_vouchers(&vouchers).await?;
        Ok(made)
    }

    /// Credits a voucher to the payer's wallet, once.
    pub async fn redeem(&self, payer_id: &str, code: &str) -> Result<Voucher, DomainError> {
        let normalized: String = code
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .map(|c| c.to_ascii_uppercase())
            .collect();
        let unknown = || DomainError::invalid("code", "this voucher code is not valid");
        let used = || DomainError::Conflict("this voucher has already been redeemed".into());
        let voucher = self
            .store
            .find_voucher(&voucher_hash(&normalized))
            .await?
            .ok_or_else(unknown)?;
        let plan =
            payments::plan_redemption(&voucher, payer_id, self.clock.now_ms()).ok_or_else(used)?;
        match self.store.apply_redemption(&plan).await? {
            PlanOutcome::Applied(redeemed) => Ok(redeemed),
            PlanOutcome::Stale(_) => Err(used()),
            PlanOutcome::NotFound => Err(unknown()),
        }
    }

    /// The merchant's accounts of one mode.
    pub async fn merchant_accounts(
        &self,
        merchant_id: &str,
        livemode: bool,
    ) -> Result<Vec<Account>, DomainError> {
        let mut accounts = self
            .store
            .accounts_of(AccountKind::Merchant, merchant_id)
            .await?;
        accounts.retain(|a| a.book.livemode == livemode);
        Ok(accounts)
    }

    /// Recomputes every balance from the transfers; empty when all is well.
    pub async fn verify_ledger(&self) -> Result<Vec<Mismatch>, DomainError> {
        let (accounts, transfers) = self.store.ledger_snapshot().await?;
        Ok(verify(&accounts, &transfers))
    }
}

/// A payment that names no hourly cap cannot meet one: any refusal is the session's.
fn closed_unless_paid(
    charged: Result<SessionRecord, PaymentRefusal>,
) -> Result<SessionRecord, DomainError> {
    match charged {
        Ok(paid) => Ok(paid),
        Err(PaymentRefusal::Closed(status)) => Err(DomainError::Closed(status)),
        Err(PaymentRefusal::AutoLimitReached) => Err(DomainError::Closed(SessionStatus::Pending)),
    }
}

/// Sixteen characters from an alphabet without look-alikes, grouped by four.
fn voucher_code() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
    use rand::Rng;
    let mut rng = rand::rngs::OsRng;
    (0..16)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

fn voucher_hash(normalized_code: &str) -> String {
    hex::encode(Sha256::digest(normalized_code.as_bytes()))
}

/// `ABCD-EFGH-JKLM-NPQR`, as codes are shown.
pub fn format_voucher_code(code: &str) -> String {
    code.as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join("-")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_thresholds_are_twenty_cents_in_each_currency() {
        assert_eq!(default_threshold(Currency::USD), 20);
        assert_eq!(default_threshold("jpy".parse().unwrap()), 0);
        assert_eq!(default_threshold("kwd".parse().unwrap()), 200);
    }

    #[test]
    fn voucher_codes_are_long_and_grouped() {
        let code = voucher_code();
        assert_eq!(code.len(), 16);
        assert_ne!(code, voucher_code());
        assert_eq!(
            format_voucher_code("ABCDEFGHJKLMNPQR"),
            "ABCD-EFGH-JKLM-NPQR"
        );
    }
}
