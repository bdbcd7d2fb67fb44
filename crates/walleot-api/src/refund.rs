use crate::session::optional_whole_number;
use crate::Currency;
use serde::{Deserialize, Serialize};

/// Why money went back to the payer; the merchant's own account of it.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum RefundReason {
    RequestedByCustomer,
    Duplicate,
    /// The paid tool failed after its payment was captured.
    ToolFailed,
    Other,
}

impl RefundReason {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// `POST /v1/sessions/{sessionId}/refunds`; the body may be left out for a full refund.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateRefundRequest {
    /// Minor units to give back, at most what was captured and not yet refunded;
    /// all of that when left out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 99_999_999))]
    pub amount: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<RefundReason>,
}

/// `POST /v1/sessions/{sessionId}/capture`; the body may be left out to capture all that
/// is held.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CaptureRequest {
    /// Minor units to capture, from 1 to the amount held (metered use: hold the price,
    /// capture what was used); the rest goes back to the payer at once. All of it when
    /// left out.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 99_999_999))]
    pub amount: Option<i64>,
}

/// Money given back to the payer of a paid session. A refund is made at once, by a
/// ledger transfer from the merchant's balance to the payer's wallet, and never changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Refund {
    #[cfg_attr(feature = "openapi", schema(examples("ref_4AbCdEfGhIjKlMnOpQrStUvW")))]
    pub refund_id: String,
    pub session_id: String,
    pub amount: i64,
    pub currency: Currency,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub reason: Option<RefundReason>,
    /// Always `succeeded`: a refund is refused, never left pending.
    pub status: RefundStatus,
    /// RFC 3339, UTC.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    pub livemode: bool,
}

/// A refund's state; refunds complete when made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RefundStatus {
    Succeeded,
}

/// `GET /v1/sessions/{sessionId}/refunds`: every refund of the session, oldest first
/// (a session has at most [`MAX_REFUNDS_PER_SESSION`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct RefundList {
    pub data: Vec<Refund>,
}

/// Refunds one session may have.
pub const MAX_REFUNDS_PER_SESSION: i64 = 100;
