//! `/v1/webhook_endpoints`: where the merchant is told of its events, and
//! `/v1/events/{eventId}/redeliver`.

use super::error::ApiError;
use super::extract::{ApiJson, ApiPath};
use super::openapi::{
    BadRequest, Conflict, IdempotencyKeyReused, NotFound, PayloadTooLarge, RateLimited,
    RequestTimeout, ServerError, Unauthorized, UnsupportedMediaType,
};
use crate::app::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::webhooks::WebhookEndpointRecord;
use crate::domain::Principal;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use walleot_api::{
    CreateWebhookEndpointRequest, Redelivery, WebhookEndpoint, WebhookEndpointList,
    WebhookEndpointStatus,
};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webhook_endpoints", post(create).get(list))
        .route("/webhook_endpoints/{id}", get(read).delete(delete))
        .route("/webhook_endpoints/{id}/enable", post(enable))
        .route("/events/{id}/redeliver", post(redeliver))
}

fn to_wire(record: WebhookEndpointRecord, with_secret: bool) -> WebhookEndpoint {
    WebhookEndpoint {
        endpoint_id: record.id,
        url: record.url,
        events: record.events,
        status: record.status,
        disabled_reason: record.disabled_reason,
        livemode: record.livemode,
        created_at: rfc3339(record.created_at),
        secret: with_secret.then_some(record.secret),
    }
}

#[utoipa::path(
    post,
    path = "/webhook_endpoints",
    operation_id = "createWebhookEndpoint",
    tag = "webhooks",
    summary = "Add a webhook endpoint",
    description = "Events of the key's merchant and mode that happen from now on are posted \
        to `url` (see the `event` webhook for what each delivery carries and how it is \
        signed). The answer holds the signing secret, shown this once. Live endpoints must \
        be `https://` on public addresses. At most 16 endpoints per mode.",
    request_body(
        content = CreateWebhookEndpointRequest,
        example = json!({"url": "https://example.com/walleot", "events": ["session.paid"]}),
    ),
    responses(
        (status = 201, description = "The endpoint, with its secret.", body = WebhookEndpoint),
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
pub(super) async fn create(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiJson(request): ApiJson<CreateWebhookEndpointRequest>,
) -> Result<(StatusCode, Json<WebhookEndpoint>), ApiError> {
    let endpoint = state
        .webhooks
        .create(&principal, &request.url, request.events)
        .await?;
    tracing::info!(endpoint = %endpoint.id, "webhook endpoint added");
    Ok((StatusCode::CREATED, Json(to_wire(endpoint, true))))
}

#[utoipa::path(
    get,
    path = "/webhook_endpoints",
    operation_id = "listWebhookEndpoints",
    tag = "webhooks",
    summary = "List the webhook endpoints",
    description = "The endpoints of the key's merchant and mode, oldest first, without their \
        secrets.",
    responses(
        (status = 200, description = "The endpoints.", body = WebhookEndpointList),
        (status = 401, response = Unauthorized),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<WebhookEndpointList>, ApiError> {
    let endpoints = state.webhooks.list(&principal).await?;
    Ok(Json(WebhookEndpointList {
        data: endpoints.into_iter().map(|e| to_wire(e, false)).collect(),
    }))
}

#[utoipa::path(
    get,
    path = "/webhook_endpoints/{endpointId}",
    operation_id = "getWebhookEndpoint",
    tag = "webhooks",
    summary = "Read a webhook endpoint",
    description = "Whether it is enabled and, if it was disabled, why.",
    params(("endpointId" = String, Path, pattern = "^we_[0-9A-Za-z]{24}$")),
    responses(
        (status = 200, description = "The endpoint.", body = WebhookEndpoint),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn read(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let endpoint = state.webhooks.get(&principal, &id).await?;
    Ok(Json(to_wire(endpoint, false)))
}

#[utoipa::path(
    delete,
    path = "/webhook_endpoints/{endpointId}",
    operation_id = "deleteWebhookEndpoint",
    tag = "webhooks",
    summary = "Remove a webhook endpoint",
    description = "Nothing more is sent to it, not even the retries of earlier events.",
    params(("endpointId" = String, Path, pattern = "^we_[0-9A-Za-z]{24}$")),
    responses(
        (status = 200, description = "The endpoint, `deleted`.", body = WebhookEndpoint),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn delete(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let endpoint = state
        .webhooks
        .set_status(&principal, &id, WebhookEndpointStatus::Deleted)
        .await?;
    tracing::info!(endpoint = %endpoint.id, "webhook endpoint removed");
    Ok(Json(to_wire(endpoint, false)))
}

#[utoipa::path(
    post,
    path = "/webhook_endpoints/{endpointId}/enable",
    operation_id = "enableWebhookEndpoint",
    tag = "webhooks",
    summary = "Enable a disabled webhook endpoint",
    description = "An endpoint whose deliveries failed for days is disabled; once it answers \
        again, enable it: the events it missed while disabled are sent to it.",
    params(("endpointId" = String, Path, pattern = "^we_[0-9A-Za-z]{24}$")),
    responses(
        (status = 200, description = "The endpoint, `enabled`.", body = WebhookEndpoint),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn enable(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<WebhookEndpoint>, ApiError> {
    let endpoint = state
        .webhooks
        .set_status(&principal, &id, WebhookEndpointStatus::Enabled)
        .await?;
    Ok(Json(to_wire(endpoint, false)))
}

#[utoipa::path(
    post,
    path = "/events/{eventId}/redeliver",
    operation_id = "redeliverEvent",
    tag = "webhooks",
    summary = "Send an event again",
    description = "Sends the event at once, with the same `webhook-id`, to every enabled \
        endpoint of the key's merchant and mode that takes its type, and retries on the \
        usual schedule if it fails.",
    params(("eventId" = String, Path, pattern = "^evt_[0-9A-Za-z]{24}$")),
    responses(
        (status = 202, description = "The endpoints it is sent to.", body = Redelivery),
        (status = 400, response = BadRequest),
        (status = 401, response = Unauthorized),
        (status = 404, response = NotFound),
        (status = 409, response = Conflict),
        (status = 422, response = IdempotencyKeyReused),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn redeliver(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    ApiPath(id): ApiPath<String>,
) -> Result<(StatusCode, Json<Redelivery>), ApiError> {
    let endpoint_ids = state.webhooks.redeliver(&principal, &id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Redelivery {
            event_id: id,
            endpoint_ids,
        }),
    ))
}
