//! The one place where errors become HTTP answers: every failure on `/v1` leaves as
//! `{"error": {"type": "...", "message": "..."}}` with its status code.

use crate::domain::keys::{AuthError, AuthenticateError};
use crate::domain::ports::StoreError;
use crate::domain::DomainError;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use walleot_api::{ErrorBody, ErrorType};

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: ErrorType,
    pub message: String,
    /// The same request may succeed later: its answer must not be kept for its
    /// `Idempotency-Key` (see [`Retryable`]).
    pub retryable: bool,
    /// Seconds until the same request may succeed, sent as `Retry-After`.
    pub retry_after: Option<u64>,
}

/// Marks an answer that a retry with the same `Idempotency-Key` should run again
/// rather than replay.
#[derive(Debug, Clone, Copy)]
pub struct Retryable;

impl ApiError {
    pub fn new(status: StatusCode, kind: ErrorType, message: impl Into<String>) -> Self {
        ApiError {
            status,
            kind,
            message: message.into(),
            retryable: false,
            retry_after: None,
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, ErrorType::InvalidRequest, message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, ErrorType::NotFound, message)
    }

    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::ServerError,
            "the service failed to answer; the request may be retried",
        )
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::Invalid { .. } => ApiError::invalid(err.to_string()),
            DomainError::NotFound(m) => ApiError::not_found(m),
            DomainError::Conflict(m) => ApiError::new(StatusCode::CONFLICT, ErrorType::Conflict, m),
            DomainError::Forbidden(m) => {
                ApiError::new(StatusCode::FORBIDDEN, ErrorType::Forbidden, m)
            }
            DomainError::Retry(m) => ApiError {
                retryable: true,
                ..ApiError::new(StatusCode::CONFLICT, ErrorType::Conflict, m)
            },
            DomainError::Expired(m) => ApiError::invalid(m),
            DomainError::InsufficientFunds { .. } => ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                ErrorType::PaymentRequired,
                err.to_string(),
            ),
            DomainError::InsufficientBalance { .. } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorType::InsufficientBalance,
                err.to_string(),
            ),
            DomainError::Closed(_) | DomainError::Locked { .. } => {
                ApiError::new(StatusCode::CONFLICT, ErrorType::Conflict, err.to_string())
            }
            DomainError::FactorRejected { .. } => ApiError::invalid(err.to_string()),
            DomainError::Store(e) => e.into(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        if let StoreError::AnsweredMeanwhile = err {
            // Not kept: the retry replays the answer kept first.
            let mut conflict =
                ApiError::new(StatusCode::CONFLICT, ErrorType::Conflict, err.to_string());
            conflict.retryable = true;
            return conflict;
        }
        if let StoreError::Unavailable(_) | StoreError::Contended(_) = err {
            // Passing: the same request is expected to succeed shortly.
            tracing::warn!(error = %err, "database unavailable");
            return ApiError {
                retryable: true,
                retry_after: Some(1),
                ..ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorType::ServerError,
                    "the database is unavailable; retry the request shortly",
                )
            };
        }
        if let StoreError::Unstorable(_) = err {
            return ApiError::invalid(err.to_string());
        }
        tracing::error!(error = %err, "storage failed");
        ApiError::internal()
    }
}

impl From<AuthError> for ApiError {
    fn from(err: AuthError) -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            ErrorType::Unauthorized,
            err.to_string(),
        )
    }
}

impl From<AuthenticateError> for ApiError {
    fn from(err: AuthenticateError) -> Self {
        match err {
            AuthenticateError::Refused(e) => e.into(),
            AuthenticateError::Store(e) => e.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody::new(self.kind, self.message);
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut response = (self.status, bytes).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if self.retryable {
            response.extensions_mut().insert(Retryable);
        }
        if let Some(secs) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"walleot\""),
            );
        }
        response
    }
}
