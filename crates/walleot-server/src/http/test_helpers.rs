//! `/v1/test_helpers`: let a merchant drive a test-mode session to each outcome without a
//! browser, as a sandbox payer (or time) would. Live keys are refused with 403.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::openapi::{
    BadRequest, Conflict, Forbidden, IdempotencyKeyReused, NotFound, RateLimited, ServerError,
    Unauthorized,
};
use super::sessions::to_wire;
use crate::app::AppState;
use crate::domain::mandates::Usage;
use crate::domain::sessions::Simulation;
use crate::domain::Principal;
use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use walleot_api::{Mandate, Session, TestMandateRequest};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/test_helpers/sessions/{id}/pay", post(pay))
        .route("/test_helpers/sessions/{id}/fail", post(fail))
        .route("/test_helpers/sessions/{id}/expire", post(expire))
        .route(
            "/test_helpers/sessions/{id}/grant_mandate",
            post(grant_mandate),
        )
}

/// What every helper does, as the document says it.
const SIMULATION: &str = "Test mode only: a live key answers 403. Only a pending session \
    changes; asking for the state it is already in changes nothing; any other state answers \
    409.";

async fn simulate(
    state: &AppState,
    principal: &Principal,
    id: &str,
    what: Simulation,
) -> Result<Json<Session>, ApiError> {
    let record = state.sessions.simulate(principal, id, what).await?;
    Ok(Json(to_wire(state, record)))
}

#[utoipa::path(
    post,
    path = "/test_helpers/sessions/{sessionId}/pay",
    operation_id = "testHelperPaySession",
    tag = "test helpers",
    summary = "Pay a test session as a sandbox payer",
    description = SIMULATION,
    responses(
        (status = 200, description = "The session, now `paid`.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn pay(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    simulate(&state, &principal, &id, Simulation::Pay).await
}

#[utoipa::path(
    post,
    path = "/test_helpers/sessions/{sessionId}/fail",
    operation_id = "testHelperFailSession",
    tag = "test helpers",
    summary = "Make a test session's payment fail",
    description = SIMULATION,
    responses(
        (status = 200, description = "The session, now `failed`.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn fail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    simulate(&state, &principal, &id, Simulation::Fail).await
}

#[utoipa::path(
    post,
    path = "/test_helpers/sessions/{sessionId}/expire",
    operation_id = "testHelperExpireSession",
    tag = "test helpers",
    summary = "Expire a test session now",
    description = SIMULATION,
    responses(
        (status = 200, description = "The session, now `expired`.", body = Session),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn expire(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    simulate(&state, &principal, &id, Simulation::Expire).await
}

#[utoipa::path(
    post,
    path = "/test_helpers/sessions/{sessionId}/grant_mandate",
    operation_id = "testHelperGrantMandate",
    tag = "test helpers",
    summary = "Grant a mandate as the sandbox payer",
    description = "Test mode only: a live key answers 403. The session must name a `customer` \
        and have been paid with the pay test helper; the sandbox payer then grants the \
        merchant a mandate for that customer, in the session's currency, as a payer does on \
        a paid checkout; without any limit, the per-call limit is that session's amount. Its \
        payments are covered from the sandbox.",
    request_body = TestMandateRequest,
    responses(
        (status = 200, description = "The new mandate.", body = Mandate),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 403, response = Forbidden),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn grant_mandate(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<TestMandateRequest>,
) -> Result<Json<Mandate>, ApiError> {
    let period = request.period_limit.map(|limit| (limit.per, limit.amount));
    let mandate = state
        .mandates
        .grant_as_sandbox_payer(
            &principal,
            &id,
            (request.per_call_limit, period, request.total_limit),
            request.expires_in,
        )
        .await?;
    // Nothing is spent under a mandate just granted.
    Ok(Json(super::mandates::to_wire(
        &state,
        mandate,
        Usage::default(),
    )))
}
