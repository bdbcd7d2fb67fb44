//! `/v1/sessions/{id}/refunds`: give a captured payment back, in whole or in part, and
//! list what was given back.

use super::error::ApiError;
use super::extract::{ApiPath, OptionalJson};
use super::idempotency::Claimed;
use super::openapi::{
    BadRequest, IdempotencyKeyReused, NotFound, PayloadTooLarge, RateLimited, RefundConflict,
    RequestTimeout, ServerError, Unauthorized, UnsupportedMediaType,
};
use super::sessions::json_answer;
use crate::app::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::payments::RefundRecord;
use crate::domain::sessions::RefundAnswer;
use crate::domain::Principal;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::post;
use axum::{Extension, Json, Router};
use walleot_api::{CreateRefundRequest, Refund, RefundList, RefundStatus};

pub fn routes() -> Router<AppState> {
    Router::new().route("/sessions/{id}/refunds", post(create).get(list))
}

fn to_wire(record: RefundRecord, livemode: bool) -> Refund {
    Refund {
        refund_id: record.id,
        session_id: record.session_id,
        amount: record.amount,
        currency: record.currency,
        reason: record.reason,
        status: RefundStatus::Succeeded,
        created_at: rfc3339(record.created_at),
        livemode,
    }
}

#[utoipa::path(
    post,
    path = "/sessions/{sessionId}/refunds",
    operation_id = "createRefund",
    tag = "sessions",
    summary = "Refund a paid session, in whole or in part",
    description = "Gives money of a paid session back to its payer, from the merchant's \
        balance, at once: all that was captured and not yet refunded, or `amount` of it. \
        Several partial refunds may follow one another up to the captured amount (at most \
        100 per session). The session stays `paid` and shows `amountRefunded`. Funds still \
        held are released, not refunded (409). When the merchant's available balance cannot \
        cover the refund, it is refused with 409 `insufficient_balance`.",
    request_body(
        content = Option<CreateRefundRequest>,
        description = "Optional; leave it out to refund all that is left.",
        example = json!({"amount": 50, "reason": "tool_failed"}),
    ),
    responses(
        (status = 200, description = "The refund, made.", body = Refund),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 408, response = RequestTimeout),
        (status = 409, response = RefundConflict),
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
    ApiPath(id): ApiPath<String>,
    OptionalJson(request): OptionalJson<CreateRefundRequest>,
) -> Result<Response, ApiError> {
    let livemode = principal.mode.is_live();
    let body = |record: &RefundRecord| {
        serde_json::to_vec(&to_wire(record.clone(), livemode)).expect("a refund serializes")
    };
    let answer = claimed.as_ref().map(|Extension(claimed)| {
        move |record: &RefundRecord| claimed.completion(StatusCode::OK, body(record))
    });
    let answering = answer.as_ref().map(|a| a as &RefundAnswer<'_>);
    let (refund, _, kept) = state
        .sessions
        .refund(&principal, &id, request.amount, request.reason, answering)
        .await?;
    tracing::info!(session = %refund.session_id, refund = %refund.id, amount = refund.amount, "refunded");
    Ok(json_answer(body(&refund), kept))
}

#[utoipa::path(
    get,
    path = "/sessions/{sessionId}/refunds",
    operation_id = "listRefunds",
    tag = "sessions",
    summary = "List a session's refunds",
    description = "Every refund of the session, oldest first.",
    responses(
        (status = 200, description = "The session's refunds.", body = RefundList),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RefundList>, ApiError> {
    let (session, refunds) = state.sessions.refunds(&principal, &id).await?;
    Ok(Json(RefundList {
        data: refunds
            .into_iter()
            .map(|r| to_wire(r, session.livemode))
            .collect(),
    }))
}
