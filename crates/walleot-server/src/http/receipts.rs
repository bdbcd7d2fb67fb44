//! `/v1/sessions/{id}/receipt` and `/.well-known/jwks.json`: signed proof of a captured
//! payment, and the keys that check it.

use super::error::ApiError;
use super::extract::ApiPath;
use super::openapi::{Conflict, NotFound, RateLimited, ServerError, Unauthorized};
use crate::app::AppState;
use crate::domain::Principal;
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use walleot_api::Receipt;

pub fn routes() -> Router<AppState> {
    Router::new().route("/sessions/{id}/receipt", get(receipt))
}

#[utoipa::path(
    get,
    path = "/sessions/{sessionId}/receipt",
    operation_id = "getReceipt",
    tag = "sessions",
    summary = "The signed receipt of a captured payment",
    description = "A compact JWS signed with Ed25519 (`alg: EdDSA`) whose payload names the \
        issuer, the session, the merchant, the amount captured, the currency, the mode, the \
        session's metadata and when the money moved. Anyone can verify it with the key of \
        its `kid` at `/.well-known/jwks.json`, without asking the service; keys stay \
        published after a rotation. A session whose payment is not captured (pending, held, \
        released) answers 409.",
    responses(
        (status = 200, description = "The receipt.", body = Receipt),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn receipt(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Receipt>, ApiError> {
    let session = state.sessions.get(&principal, &id).await?;
    Ok(Json(state.receipts.receipt(&session).await?))
}

/// The public keys of receipts, for anyone; cacheable for a few minutes, since a key
/// added by a rotation is published before it signs anything seen elsewhere only as
/// quickly as the cache allows.
pub async fn jwks(State(state): State<AppState>) -> Response {
    match state.receipts.jwks().await {
        Ok(jwks) => {
            let mut response = Json(jwks).into_response();
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=300"),
            );
            response
        }
        Err(e) => ApiError::from(e).into_response(),
    }
}
