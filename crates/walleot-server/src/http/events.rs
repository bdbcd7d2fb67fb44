//! `/v1/events`: what happened to the merchant's sessions and mandates, newest first.

use super::error::ApiError;
use super::extract::ApiQuery;
use super::openapi::{BadRequest, NotFound, RateLimited, ServerError, Unauthorized};
use crate::app::AppState;
use crate::domain::Principal;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use walleot_api::EventList;

pub fn routes() -> Router<AppState> {
    Router::new().route("/events", get(list))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    #[param(minimum = 1, maximum = 100, default = 10)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page. Empty reads the first page; a cursor that names
    /// no event of this key's account answers 404.
    #[param(pattern = "^(?:evt_[0-9A-Za-z]{24})?$")]
    cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = "/events",
    operation_id = "listEvents",
    tag = "sessions",
    summary = "List the events of the merchant's sessions and mandates, newest first",
    description = "Every change of a session (created, paid, failed, expired, cancelled, \
        captured, released, refunded) and of a mandate (granted, revoked, expired) is \
        recorded as an event in the same transaction as the change, so none is missed: a \
        poller that reads pages until it meets the last event it saw has them all. Events \
        are thin: they name the session or mandate and its status before and after; read \
        it for the rest. The same events are posted to webhook endpoints.",
    params(ListParams),
    responses(
        (status = 200, description = "One page of events.", body = EventList),
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
) -> Result<Json<EventList>, ApiError> {
    let (events, has_more) = state
        .sessions
        .events(&principal, params.limit, params.cursor.as_deref())
        .await?;
    let next_cursor = has_more
        .then(|| events.last().map(|e| e.id.clone()))
        .flatten();
    Ok(Json(EventList {
        data: events.into_iter().map(|e| e.to_wire()).collect(),
        has_more,
        next_cursor,
    }))
}
