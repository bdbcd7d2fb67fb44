//! `/v1/sessions`: create, read, list and cancel payment sessions.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery};
use super::idempotency::{Claimed, Recorded};
use super::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::sessions::{ListQuery, SessionRecord};
use crate::domain::Principal;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use walleot_api::{CreateSessionRequest, Session, SessionList, SessionStatus};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/sessions", post(create).get(list))
        .route("/sessions/{id}", get(read))
        .route("/sessions/{id}/cancel", post(cancel))
        .route("/sessions/{id}/capture", post(capture))
        .route("/sessions/{id}/release", post(release))
}

/// The wire form of a stored session.
pub fn to_wire(state: &AppState, record: SessionRecord) -> Session {
    Session {
        url: state.checkout_url(&record.id),
        session_id: record.id,
        status: record.status,
        amount: record.amount,
        currency: record.currency,
        description: record.description,
        created_at: rfc3339(record.created_at),
        expires_at: rfc3339(record.expires_at),
        livemode: record.livemode,
        capture_method: record.capture_method,
        capture_status: record.capture_status,
    }
}

#[tracing::instrument(skip_all, fields(merchant = %principal.merchant_id))]
async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    claimed: Option<Extension<Claimed>>,
    ApiJson(request): ApiJson<CreateSessionRequest>,
) -> Result<Response, ApiError> {
    let record = state.sessions.prepare(&principal, request)?;
    let body =
        serde_json::to_vec(&to_wire(&state, record.clone())).map_err(|_| ApiError::internal())?;
    let completion = claimed.map(|Extension(c)| c.completion(StatusCode::OK, body.clone()));
    state.sessions.insert(&record, completion.as_ref()).await?;
    tracing::info!(session = %record.id, amount = record.amount, "session created");
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if completion.is_some() {
        response.extensions_mut().insert(Recorded);
    }
    Ok(response)
}

/// Longest long poll, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

/// Query of a read. Other parameters are ignored, as they always were.
#[derive(Debug, Deserialize)]
struct ReadParams {
    wait: Option<String>,
}

async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiQuery(params): ApiQuery<ReadParams>,
) -> Result<Json<Session>, ApiError> {
    let record = match params.wait.as_deref().map(parse_wait).transpose()? {
        Some(secs) if secs > 0 => {
            let wait = std::time::Duration::from_secs(secs);
            // A shutdown does not wait for long polls: they answer at once.
            tokio::select! {
                waited = state.sessions.wait(&principal, &id, wait) => waited?,
                _ = shutting_down(state.closing.clone()) => state.sessions.get(&principal, &id).await?,
            }
        }
        _ => state.sessions.get(&principal, &id).await?,
    };
    Ok(Json(to_wire(&state, record)))
}

/// Completes when the service begins to shut down.
async fn shutting_down(mut closing: tokio::sync::watch::Receiver<bool>) {
    if closing.wait_for(|closing| *closing).await.is_err() {
        // The service was built but is not being run: it never shuts down.
        std::future::pending::<()>().await;
    }
}

/// `wait` is a whole number of seconds from 0 to [`MAX_WAIT_SECS`], digits only.
fn parse_wait(raw: &str) -> Result<u64, ApiError> {
    raw.parse::<u64>()
        .ok()
        .filter(|secs| raw.bytes().all(|b| b.is_ascii_digit()) && *secs <= MAX_WAIT_SECS)
        .ok_or_else(|| {
            ApiError::invalid(format!(
                "wait: must be a whole number of seconds from 0 to {MAX_WAIT_SECS}"
            ))
        })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListParams {
    limit: Option<i64>,
    cursor: Option<String>,
    status: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiQuery(params): ApiQuery<ListParams>,
) -> Result<Json<SessionList>, ApiError> {
    let status = params
        .status
        .map(|s| s.parse::<SessionStatus>())
        .transpose()
        .map_err(|e| ApiError::invalid(format!("status: {e}")))?;
    let page = state
        .sessions
        .list(
            &principal,
            ListQuery {
                limit: params.limit,
                cursor: params.cursor,
                status,
            },
        )
        .await?;
    let next_cursor = if page.has_more {
        page.sessions.last().map(|s| s.id.clone())
    } else {
        None
    };
    Ok(Json(SessionList {
        data: page
            .sessions
            .into_iter()
            .map(|s| to_wire(&state, s))
            .collect(),
        has_more: page.has_more,
        next_cursor,
    }))
}

async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    let record = state.sessions.cancel(&principal, &id).await?;
    Ok(Json(to_wire(&state, record)))
}

async fn capture(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    let record = state.sessions.capture(&principal, &id).await?;
    Ok(Json(to_wire(&state, record)))
}

async fn release(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    let record = state.sessions.release(&principal, &id).await?;
    Ok(Json(to_wire(&state, record)))
}
