//! `GET /v1/balance`: the merchant's balance per currency, in the key's mode.

use super::error::ApiError;
use super::openapi::{RateLimited, ServerError, Unauthorized};
use crate::app::AppState;
use crate::domain::Principal;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use walleot_api::{Balance, Money};

pub fn routes() -> Router<AppState> {
    Router::new().route("/balance", get(balance))
}

#[utoipa::path(
    get,
    path = "/balance",
    operation_id = "getBalance",
    tag = "balance",
    summary = "The merchant's balance",
    description = "Per currency, in the key's mode: `available` is what payers have paid; \
        `pending` is held for the merchant and not yet captured.",
    responses(
        (status = 200, description = "The balance.", body = Balance),
        (status = 401, response = Unauthorized),
        (status = 429, response = RateLimited),
        (status = 500, response = ServerError),
    )
)]
pub(super) async fn balance(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Balance>, ApiError> {
    let livemode = principal.mode.is_live();
    let accounts = state
        .wallets
        .merchant_accounts(&principal.merchant_id, livemode)
        .await?;
    Ok(Json(Balance {
        available: accounts
            .iter()
            .map(|a| Money {
                amount: a.balance(),
                currency: a.book.currency,
            })
            .collect(),
        pending: accounts
            .iter()
            .map(|a| Money {
                amount: a.credits_pending,
                currency: a.book.currency,
            })
            .collect(),
        livemode,
    }))
}
