//! `/v1/mandates`: the mandates payers granted the merchant, with what was spent.

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery};
use super::openapi::{BadRequest, NotFound, RateLimited, ServerError, Unauthorized};
use crate::app::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::mandates::{MandateQuery, MandateRecord, Usage};
use crate::domain::Principal;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use serde::Deserialize;
use utoipa::IntoParams;
use walleot_api::{Mandate, MandateList, MandateStatus};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/mandates", get(list))
        .route("/mandates/{id}", get(read))
}

/// The wire form of a mandate as of now. Nothing names the payer: the merchant knows
/// its customer reference, and that is all it is told.
pub(super) fn to_wire(state: &AppState, mandate: MandateRecord, usage: Usage) -> Mandate {
    let now = state.clock.now_ms();
    let status = mandate.status_at(now);
    let remaining = mandate.remaining(&usage, now);
    let period = mandate.period_at(now);
    Mandate {
        mandate_id: mandate.id,
        status,
        customer: mandate.customer,
        currency: mandate.currency,
        livemode: mandate.livemode,
        per_call_limit: mandate.limits.per_call,
        period: mandate.limits.period.map(|(p, _)| p),
        period_limit: mandate.limits.period.map(|(_, max)| max),
        total_limit: mandate.limits.total,
        spent_in_period: usage.in_period,
        spent_total: usage.total,
        remaining,
        period_ends_at: period.map(|(_, end)| rfc3339(end)),
        created_at: rfc3339(mandate.created_at),
        expires_at: rfc3339(mandate.expires_at),
        revoked_at: mandate.revoked_at.map(rfc3339),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(super) struct ListParams {
    #[param(minimum = 1, maximum = 100, default = 10)]
    limit: Option<i64>,
    /// `nextCursor` of the previous page. Empty reads the first page; a cursor that names
    /// no mandate of this key's account answers 404.
    #[param(pattern = "^(?:mdt_[0-9A-Za-z]{24})?$")]
    cursor: Option<String>,
    /// Only the mandates of this customer reference (printable ASCII, as given at
    /// creation; empty matches none).
    #[param(max_length = 255, pattern = r"^[\x20-\x7E]*$")]
    customer: Option<String>,
    /// Only mandates in this state, as of now.
    #[param(value_type = Option<MandateStatus>)]
    status: Option<String>,
}

#[utoipa::path(
    get,
    path = "/mandates",
    operation_id = "listMandates",
    tag = "mandates",
    summary = "List the mandates payers granted, newest first",
    params(ListParams),
    responses(
        (status = 200, description = "One page of mandates.", body = MandateList),
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
) -> Result<Json<MandateList>, ApiError> {
    let status = params
        .status
        .map(|s| {
            s.parse::<MandateStatus>().map_err(|_| {
                ApiError::invalid(format!(
                    "status: unknown status `{s}`; expected one of active, revoked, expired"
                ))
            })
        })
        .transpose()?;
    let page = state
        .mandates
        .list(
            &principal,
            MandateQuery {
                customer: params.customer,
                status,
                cursor: params.cursor,
                limit: params.limit,
            },
        )
        .await?;
    let next_cursor = if page.has_more {
        page.mandates.last().map(|(m, _)| m.id.clone())
    } else {
        None
    };
    Ok(Json(MandateList {
        data: page
            .mandates
            .into_iter()
            .map(|(m, usage)| to_wire(&state, m, usage))
            .collect(),
        has_more: page.has_more,
        next_cursor,
    }))
}

#[utoipa::path(
    get,
    path = "/mandates/{mandateId}",
    operation_id = "getMandate",
    tag = "mandates",
    summary = "A mandate: its limits, what was spent and what remains",
    params(("mandateId" = String, Path, description = "The mandate's id (`mdt_…`).")),
    responses(
        (status = 200, description = "The mandate.", body = Mandate),
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
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Mandate>, ApiError> {
    let (mandate, usage) = state.mandates.get(&principal, &id).await?;
    Ok(Json(to_wire(&state, mandate, usage)))
}
