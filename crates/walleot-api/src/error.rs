use serde::{Deserialize, Serialize};

/// The body of every error answer: `{"error": {"type": "...", "message": "..."}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema), schema(as = Error))]
pub struct ErrorBody {
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(inline))]
    pub kind: ErrorType,
    pub message: String,
}

/// The machine-readable kind of an error. Each has one HTTP status, except
/// `invalid_request`, which also covers 413 (body too large) and 415 (not JSON).
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
    strum::Display,
)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorType {
    /// 400, 413 or 415: the request cannot be understood as sent.
    InvalidRequest,
    /// 401: missing, malformed, unknown or revoked API key.
    Unauthorized,
    /// 402: the payment could not be made.
    PaymentRequired,
    /// 403: the key is valid but may not do this (a live key on a test helper).
    Forbidden,
    /// 404: no such resource for this key, or no such route.
    NotFound,
    /// 405: the route exists, the method does not.
    MethodNotAllowed,
    /// 409: the resource is in a state that forbids the request, or an idempotent
    /// request with the same key is still running.
    Conflict,
    /// 409: the merchant's available balance cannot cover a refund.
    InsufficientBalance,
    /// 422: an `Idempotency-Key` was reused with a different request.
    IdempotencyKeyReused,
    /// 429: the key's rate limit is spent; see `Retry-After`.
    RateLimited,
    /// 500: the service failed; the request may be retried.
    ServerError,
    /// A type this client does not know yet (newer service).
    #[serde(other)]
    Unknown,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl ErrorBody {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                kind,
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_body_has_the_reference_shape() {
        let body = ErrorBody::new(ErrorType::NotFound, "no such session");
        assert_eq!(
            serde_json::to_string(&body).unwrap(),
            r#"{"error":{"type":"not_found","message":"no such session"}}"#
        );
    }

    #[test]
    fn an_unknown_error_type_still_parses() {
        let body: ErrorBody =
            serde_json::from_str(r#"{"error":{"type":"brand_new","message":"m"}}"#).unwrap();
        assert_eq!(body.error.kind, ErrorType::Unknown);
    }
}
