//! `/v1/test_helpers`: let a merchant drive a test-mode session to each outcome without a
//! browser, as a sandbox payer (or time) would. Live keys are refused with 403.

use super::error::ApiError;
use super::extract::ApiPath;
use super::sessions::to_wire;
use super::AppState;
use crate::domain::Principal;
use axum::extract::State;
use axum::routing::post;
use axum::{Extension, Json, Router};
use walleot_api::{Session, SessionStatus};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/test_helpers/sessions/{id}/pay", post(pay))
        .route("/test_helpers/sessions/{id}/fail", post(fail))
        .route("/test_helpers/sessions/{id}/expire", post(expire))
}

async fn simulate(
    state: &AppState,
    principal: &Principal,
    id: &str,
    to: SessionStatus,
) -> Result<Json<Session>, ApiError> {
    let record = state.sessions.simulate(principal, id, to).await?;
    Ok(Json(to_wire(state, record)))
}

async fn pay(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    simulate(&state, &principal, &id, SessionStatus::Paid).await
}

async fn fail(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    simulate(&state, &principal, &id, SessionStatus::Failed).await
}

async fn expire(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Session>, ApiError> {
    simulate(&state, &principal, &id, SessionStatus::Expired).await
}
