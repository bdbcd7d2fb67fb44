//! The payment domain, free of HTTP and SQL: merchants and their API keys, payment
//! sessions and the rules of their lifecycle. Handlers and the CLI call into the
//! services here; the services reach the database only through the storage ports of
//! [`ports`], which each database implements.

pub mod approvals;
pub mod clock;
pub mod events;
pub mod factors;
pub mod ids;
pub mod keys;
pub mod ledger;
pub mod mandates;
pub mod merchants;
pub mod money;
pub mod paging;
pub mod payers;
pub mod payments;
pub mod ports;
pub mod receipts;
pub mod sessions;
pub mod topups;
pub mod wallets;
pub mod webhooks;

pub use clock::{Clock, ManualClock, SystemClock};
pub use keys::{ApiKey, KeyHasher, Livemode, Principal};

/// Why a domain operation refused its input or could not be done.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The caller sent a value that breaks a rule; `field` names it.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        message: String,
    },
    #[error("{0}")]
    NotFound(String),
    /// The resource exists but its state forbids the request.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Forbidden(String),
    /// Could not be done just now, but the same request may succeed when sent again;
    /// never kept as the final answer of an `Idempotency-Key`.
    #[error("{0}")]
    Retry(String),
    /// A prompt or challenge that no longer holds (expired, used, or made for a charge
    /// that has since changed): the client starts the step again.
    #[error("{0}")]
    Expired(String),
    /// The payer's wallet holds less than the charge.
    #[error("insufficient funds")]
    InsufficientFunds { available: i64 },
    /// The session is not pending any more.
    #[error("the payment is {0}")]
    Closed(walleot_api::SessionStatus),
    /// The merchant's available balance cannot cover a refund.
    #[error("the merchant's available balance ({available}) cannot cover a refund of {needed}")]
    InsufficientBalance { available: i64, needed: i64 },
    /// Approvals are locked after failed second factors, until this instant.
    #[error("approval is locked after failed attempts")]
    Locked { until: i64 },
    /// A second factor did not verify; `locked` when this failure locked approvals.
    #[error("{}", rejected_text(*.factor, *.locked))]
    FactorRejected {
        factor: payers::ApprovalMethod,
        locked: bool,
    },
    #[error(transparent)]
    Store(ports::StoreError),
}

fn rejected_text(factor: payers::ApprovalMethod, locked: bool) -> &'static str {
    match (factor, locked) {
        (payers::ApprovalMethod::Passkey, false) => "the passkey did not verify",
        (payers::ApprovalMethod::Passkey, true) => {
            "the passkey did not verify; approval is now locked for a while"
        }
        (_, false) => "the code is not right, or was already used",
        (_, true) => "the code is not right; approval is now locked for a while",
    }
}

impl From<ports::StoreError> for DomainError {
    /// A wallet that would go below zero is the payer's shortfall, not a failure.
    fn from(e: ports::StoreError) -> Self {
        match e {
            ports::StoreError::Ledger(ledger::LedgerError::InsufficientFunds {
                available, ..
            }) => DomainError::InsufficientFunds { available },
            other => DomainError::Store(other),
        }
    }
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            message: message.into(),
        }
    }
}
