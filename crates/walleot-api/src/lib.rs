//! The wire contract of the Walleot payment API.
//!
//! Everything a client and the service must agree on byte for byte lives here: request
//! and answer bodies, the session status values, the error body and the currency table.
//! The field names follow the public API reference (`sessionId`, `url`, `status`) and
//! stay stable; new fields may be added to answers, never renamed.

mod currency;
mod error;
mod event;
mod mandate;
#[cfg(feature = "openapi")]
mod openapi;
mod receipt;
mod refund;
mod session;
mod webhook;

pub use currency::{Currency, UnknownCurrency};
pub use error::{ErrorBody, ErrorDetail, ErrorType};
pub use event::{Event, EventData, EventList};
pub use mandate::{
    Mandate, MandateList, MandatePeriod, MandateStatus, PeriodLimit, TestMandateRequest,
};
pub use receipt::{Jwk, Jwks, Receipt, ReceiptClaims};
pub use refund::{
    CaptureRequest, CreateRefundRequest, Refund, RefundList, RefundReason, RefundStatus,
    MAX_REFUNDS_PER_SESSION,
};
pub use session::{
    Balance, CaptureMethod, CaptureStatus, CreateSessionRequest, CreateSessionResponse, Money,
    Session, SessionList, SessionStatus, UnknownStatus,
};

pub use webhook::{
    webhook_headers, CreateWebhookEndpointRequest, EventType, Redelivery, WebhookEndpoint,
    WebhookEndpointList, WebhookEndpointStatus,
};

/// Header names of the API that both sides use.
pub mod headers {
    pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
    pub const IDEMPOTENT_REPLAYED: &str = "idempotent-replayed";
    pub const RATE_LIMIT_LIMIT: &str = "x-ratelimit-limit";
    pub const RATE_LIMIT_REMAINING: &str = "x-ratelimit-remaining";
    pub const RATE_LIMIT_RESET: &str = "x-ratelimit-reset";
    pub const RATE_LIMIT: &str = "ratelimit";
    pub const RATE_LIMIT_POLICY: &str = "ratelimit-policy";
}
