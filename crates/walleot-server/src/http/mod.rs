//! The HTTP face of the service: the `/v1` API and the health check. Each resource owns
//! its routes in a file of its own; this file assembles them with the gate (keys and
//! rate limits), idempotency, body limits and panic safety.

pub mod balance;
pub mod error;
pub mod extract;
pub mod gate;
pub mod idempotency;
pub mod openapi;
pub mod server;
pub mod sessions;
pub mod test_helpers;

use crate::domain::keys::Keys;
use crate::domain::ports::Store;
use crate::domain::sessions::Sessions;
use crate::domain::wallets::Wallets;
use crate::domain::Clock;
use crate::ratelimit::RateLimiter;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, map_response, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use idempotency::IdempotencyPolicy;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use walleot_api::ErrorType;

/// Everything a handler may use, cheap to clone.
#[derive(Clone)]
pub struct AppState {
    pub keys: Keys,
    pub sessions: Sessions,
    pub wallets: Wallets,
    pub topups: crate::domain::topups::TopUps,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limiter: Arc<RateLimiter>,
    pub idempotency: IdempotencyPolicy,
    /// Base of the links handed to payers, without a trailing slash.
    pub public_url: Arc<str>,
    pub pages: Arc<crate::pages::PageContext>,
    /// Turns true when the service begins to shut down.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

impl AppState {
    pub fn checkout_url(&self, session_id: &str) -> String {
        format!("{}/checkout/{session_id}", self.public_url)
    }
}

/// `Strict-Transport-Security` of every answer of a service reached over HTTPS: two years.
const HSTS: &str = "max-age=63072000";

pub fn router(state: AppState) -> Router {
    let https = state
        .public_url
        .to_ascii_lowercase()
        .starts_with("https://");
    let v1 = Router::new()
        .merge(sessions::routes())
        .merge(test_helpers::routes())
        .merge(balance::routes())
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(from_fn(refuse_declared_oversize))
        .layer(from_fn_with_state(state.clone(), gate::gate));
    let app = Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(health))
        .merge(crate::pages::routes())
        .fallback(not_found)
        .layer(from_fn(|req: Request, next: Next| async move {
            // `/v1` refuses inside its gate, so that the answer has rate-limit headers.
            if req.uri().path().starts_with("/v1/") {
                next.run(req).await
            } else {
                refuse_declared_oversize(req, next).await
            }
        }))
        .layer(DefaultBodyLimit::max(idempotency::MAX_BODY))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    if https {
        app.layer(map_response(|mut response: Response| async move {
            response.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
            response
        }))
    } else {
        app
    }
}

/// Answers 413 at once to a request that declares a body over the limit, instead of
/// waiting for a body that may never come.
async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if declared.is_some_and(|length| length > idempotency::MAX_BODY as u64) {
        return extract::body_rejection(StatusCode::PAYLOAD_TOO_LARGE).into_response();
    }
    next.run(req).await
}

async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::MethodNotAllowed,
        "this route does not accept that method; see /v1/openapi.json",
    )
}

async fn health(State(state): State<AppState>) -> Response {
    match state.store.ping().await {
        Ok(()) => Json(serde_json::json!({"status": "ok"})).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "health check failed");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(serde_json::json!({"status": "unavailable"})),
            )
                .into_response()
        }
    }
}
