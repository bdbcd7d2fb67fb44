//! The HTTP face of the service: the `/v1` API and the health check. Each resource owns
//! its routes in a file of its own; this file assembles them with the gate (keys and
//! rate limits), idempotency and body limits. It knows nothing of the pages: the
//! application (`crate::app`) mounts both.

pub mod balance;
pub mod error;
pub mod events;
pub mod extract;
pub mod gate;
pub mod idempotency;
pub mod mandates;
pub mod openapi;
pub mod receipts;
pub mod refunds;
pub mod server;
pub mod sessions;
pub mod test_helpers;
pub mod webhooks;

use crate::app::AppState;
use axum::extract::{Request, State};
use axum::http::{header, StatusCode};
use axum::middleware::{from_fn, from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use error::ApiError;
use walleot_api::ErrorType;

/// The `/v1` API, behind its gate (keys and rate limits), idempotency and the early
/// refusal of oversized bodies; `crate::app` mounts it beside the pages.
pub fn v1(state: &AppState) -> Router<AppState> {
    Router::new()
        .merge(sessions::routes())
        .merge(refunds::routes())
        .merge(receipts::routes())
        .merge(events::routes())
        .merge(test_helpers::routes())
        .merge(balance::routes())
        .merge(mandates::routes())
        .merge(webhooks::routes())
        .route("/openapi.json", get(openapi::document))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(from_fn_with_state(state.clone(), idempotency::idempotency))
        .layer(from_fn(refuse_declared_oversize))
        .layer(from_fn_with_state(state.clone(), gate::gate))
}

/// Answers 413 at once to a request that declares a body over the limit, instead of
/// waiting for a body that may never come.
pub(crate) async fn refuse_declared_oversize(req: Request, next: Next) -> Response {
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

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such route; see /v1/openapi.json")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorType::MethodNotAllowed,
        "this route does not accept that method; see /v1/openapi.json",
    )
}

pub(crate) async fn health(State(state): State<AppState>) -> Response {
    let database = state.store.ping().await;
    if let Err(e) = &database {
        tracing::error!(error = %e, "health check: the database does not answer");
    }
    let redis = state.limiter.shared_store_answers().await;
    if redis == Some(false) {
        tracing::error!("health check: Redis does not answer");
    }
    let word = |ok: bool| if ok { "ok" } else { "unavailable" };
    // Without Redis the instance still serves, counting its own rate limits: degraded,
    // not out of the balancer.
    let (status, overall) = match (&database, redis) {
        (Err(_), _) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
        (Ok(()), Some(false)) => (StatusCode::OK, "degraded"),
        (Ok(()), _) => (StatusCode::OK, "ok"),
    };
    let mut body = serde_json::json!({
        "status": overall,
        "database": word(database.is_ok()),
    });
    if let Some(redis) = redis {
        body["redis"] = word(redis).into();
    }
    (status, Json(body)).into_response()
}
