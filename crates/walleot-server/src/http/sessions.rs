//! `/v1/sessions`: create, read, list and cancel payment sessions.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use super::gate::ReadWithKey;
use super::idempotency::{Claimed, Recorded};
use super::openapi::{
    BadRequest, Conflict, IdempotencyKeyReused, NotFound, PayloadTooLarge, RateLimited,
    RequestTimeout, ServerError, Unauthorized, UnsupportedMediaType,
};
use crate::app::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::ports::CoveredPayment;
use crate::domain::sessions::{Answer, ListQuery, SessionRecord, Settle};
use crate::domain::Principal;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use walleot_api::{CaptureRequest, CreateSessionRequest, Session, SessionList, SessionStatus};

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
        metadata: record.metadata,
        customer: record.customer,
        mandate_id: record.mandate_id,
        amount_captured: record.amount_captured,
        amount_refunded: record.amount_refunded,
    }
}

#[utoipa::path(
    post,
    path = "/sessions",
    operation_id = "createSession",
    tag = "sessions",
    summary = "Create a payment session",
    description = "Answers the session id and the checkout URL to send the payer to. Unknown \
        fields are refused. With `customer`, a mandate the payer granted this merchant for that \
        customer (same mode and currency) that covers the amount pays the session at once: it \
        answers `paid` (held under manual capture) and names the `mandateId`; the budget is \
        checked in the transaction that charges.",
    request_body(
        content = CreateSessionRequest,
        example = json!({"amount": 200, "currency": "usd", "description": "Pro feature unlock"}),
    ),
    responses(
        (status = 200, description = "The new session.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
#[tracing::instrument(skip_all, fields(merchant = %principal.merchant_id))]
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    claimed: Option<Extension<Claimed>>,
    ApiJson(request): ApiJson<CreateSessionRequest>,
) -> Result<Response, ApiError> {
    let record = state.sessions.prepare(&principal, request)?;
    let answer = |record: &SessionRecord| {
        serde_json::to_vec(&to_wire(&state, record.clone())).map_err(|_| ApiError::internal())
    };
    let completion = |body: &[u8]| {
        claimed
            .as_ref()
            .map(|Extension(c)| c.completion(StatusCode::OK, body.to_vec()))
    };
    let pending = answer(&record)?;
    let covered = match state.sessions.covering_payment(&record).await? {
        Some((plan, paid)) => Some(CoveredPayment {
            plan,
            completion: completion(&answer(&paid)?),
        }),
        None => None,
    };
    let stored = state
        .sessions
        .insert(&record, completion(&pending).as_ref(), covered.as_ref())
        .await?;
    tracing::info!(session = %stored.id, amount = stored.amount, mandate = ?stored.mandate_id, "session created");
    let body = if stored.mandate_id.is_some() {
        answer(&stored)?
    } else {
        pending
    };
    Ok(json_answer(body, claimed.is_some()))
}

/// Longest long poll, in seconds.
pub const MAX_WAIT_SECS: u64 = 60;

/// Query of a read. Other parameters are ignored, as they always were.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ReadParams {
    /// Seconds to wait for a pending session to change status, 0 to 60 (0 answers at
    /// once). Any other value answers 400.
    #[param(value_type = Option<u64>, minimum = 0, maximum = 60, default = 0)]
    wait: Option<String>,
}

#[utoipa::path(
    get,
    path = "/sessions/{sessionId}",
    operation_id = "getSession",
    tag = "sessions",
    summary = "Check a session's status",
    description = "A pending session whose `expiresAt` has passed answers `expired`. With \
        `wait`, a pending session is a long poll: the answer comes as soon as its status \
        changes (or its expiry passes), else after `wait` seconds with the session as it then \
        is, still `pending`.",
    params(ReadParams),
    responses(
        (status = 200, description = "The session.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    read_with_key: Option<Extension<ReadWithKey>>,
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
        _ => match read_with_key {
            Some(Extension(read)) if read.id == id => {
                state.sessions.get_read(&id, read.session).await?
            }
            _ => state.sessions.get(&principal, &id).await?,
        },
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

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    #[param(minimum = 1, maximum = 100, default = 10)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page. Empty reads the first page; a cursor that names
    /// no session of this key's account answers 404.
    #[param(pattern = "^(?:sess_[0-9A-Za-z]{24})?$")]
    cursor: Option<String>,
    /// Only sessions in this state (a pending session past its expiry counts as expired).
    #[param(value_type = Option<SessionStatus>)]
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/sessions",
    operation_id = "listSessions",
    tag = "sessions",
    summary = "List sessions, newest first",
    params(ListParams),
    responses(
        (status = 200, description = "One page of sessions.", body = SessionList),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn list(
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

#[utoipa::path(
    post,
    path = "/sessions/{sessionId}/cancel",
    operation_id = "cancelSession",
    tag = "sessions",
    summary = "Cancel a pending session",
    description = "Cancelling a cancelled session changes nothing and answers it; a paid, \
        failed or expired session answers 409.",
    responses(
        (status = 200, description = "The session, now `cancelled`.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn cancel(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    let record = state.sessions.cancel(&principal, &id).await?;
    Ok(Json(to_wire(&state, record)))
}

#[utoipa::path(
    post,
    path = "/sessions/{sessionId}/capture",
    operation_id = "captureSession",
    tag = "sessions",
    summary = "Capture the held funds of a manual-capture session",
    description = "For a session created with `captureMethod: \"manual\"` and approved by the \
        payer (it reads `paid` with `captureStatus: \"held\"`): moves the held funds to the \
        merchant. The session stays `paid`, with `captureStatus: \"captured\"` and \
        `amountCaptured`. With `amount`, only that much is captured (metered use: hold the \
        price, capture what was used) and the rest goes back to the payer in the same \
        transaction. The body may be left out. Capturing again changes nothing; a session \
        with nothing held answers 409.",
    request_body(
        content = Option<CaptureRequest>,
        description = "Optional; leave it out to capture all that is held.",
        example = json!({"amount": 120}),
    ),
    responses(
        (status = 200, description = "The session, its funds now `captured`.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = Conflict),
        (status = 413, response = PayloadTooLarge),
        (status = 415, response = UnsupportedMediaType),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn capture(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    claimed: Option<Extension<Claimed>>,
    ApiPath(id): ApiPath<String>,
    OptionalJson(request): OptionalJson<CaptureRequest>,
) -> Result<Response, ApiError> {
    let capture = Settle::Capture {
        amount: request.amount,
    };
    settle(&state, &principal, claimed, &id, capture).await
}

#[utoipa::path(
    post,
    path = "/sessions/{sessionId}/release",
    operation_id = "releaseSession",
    tag = "sessions",
    summary = "Release the held funds of a manual-capture session",
    description = "Returns the held funds to the payer, for example after the paid tool \
        failed. The session then reads `cancelled`, with `captureStatus: \"released\"`. \
        Releasing again changes nothing; a session with nothing held answers 409. Funds held \
        past the hold window (24 hours by default) are released by themselves and the \
        session reads `expired`.",
    responses(
        (status = 200, description = "The session, its funds now `released`.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn release(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    claimed: Option<Extension<Claimed>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    settle(&state, &principal, claimed, &id, Settle::Release).await
}

/// A capture or release; with an idempotency key, its answer is kept in the
/// transaction that settles.
async fn settle(
    state: &AppState,
    principal: &Principal,
    claimed: Option<Extension<Claimed>>,
    id: &str,
    request: Settle,
) -> Result<Response, ApiError> {
    let body = |record: &SessionRecord| {
        serde_json::to_vec(&to_wire(state, record.clone())).expect("a session serializes")
    };
    let answer = claimed.as_ref().map(|Extension(claimed)| {
        move |record: &SessionRecord| claimed.completion(StatusCode::OK, body(record))
    });
    let answering = answer.as_ref().map(|a| a as &Answer<'_>);
    let (record, kept) = state
        .sessions
        .settle(principal, id, request, answering)
        .await?;
    Ok(json_answer(body(&record), kept))
}

/// A JSON answer; `recorded` when its idempotent answer is kept already.
pub(super) fn json_answer(body: Vec<u8>, recorded: bool) -> Response {
    let mut response = (StatusCode::OK, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if recorded {
        response.extensions_mut().insert(Recorded);
    }
    response
}
