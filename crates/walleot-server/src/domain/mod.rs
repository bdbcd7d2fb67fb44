//! The payment domain, free of HTTP and SQL: merchants and their API keys, payment
//! sessions and the rules of their lifecycle. Handlers and the CLI call into the
//! services here; the services reach the database only through the storage ports of
//! [`ports`], which each database implements.

pub mod clock;
pub mod factors;
pub mod ids;
pub mod keys;
pub mod ledger;
pub mod merchants;
pub mod payers;
pub mod payments;
pub mod ports;
pub mod sessions;
pub mod topups;
pub mod wallets;

pub use clock::{Clock, ManualClock, SystemClock};
pub use keys::{ApiKey, KeyHasher, Mode, Principal};

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
    #[error(transparent)]
    Store(#[from] ports::StoreError),
}

impl DomainError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            field,
            message: message.into(),
        }
    }
}
