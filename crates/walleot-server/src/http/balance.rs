//! `GET /v1/balance`: the merchant's balance per currency, in the key's mode.

use super::error::ApiError;
use super::AppState;
use crate::domain::Principal;
use axum::extract::State;
use axum::routing::get;
use axum::{Extension, Json, Router};
use walleot_api::{Balance, Money};

pub fn routes() -> Router<AppState> {
    Router::new().route("/balance", get(balance))
}

async fn balance(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
) -> Result<Json<Balance>, ApiError> {
    let livemode = principal.mode.livemode();
    let accounts = state
        .wallets
        .merchant_accounts(&principal.merchant_id, livemode)
        .await?;
    Ok(Json(Balance {
        available: accounts
            .iter()
            .map(|a| Money {
                amount: a.balance(),
                currency: a.currency,
            })
            .collect(),
        pending: accounts
            .iter()
            .map(|a| Money {
                amount: a.credits_pending,
                currency: a.currency,
            })
            .collect(),
        livemode,
    }))
}
