//! `/wallet`: balances, history, the auto-approve threshold, top-ups, second factors.

use super::{csrf_forms, safe_return, spend, CheckedForm, ClientAddr, PageError, Visitor};
use crate::app::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::factors::totp;
use crate::domain::ledger::TransferKind;
use crate::domain::mandates::MandateRecord;
use crate::domain::topups::TopUpRequest;
use crate::ratelimit::Bucket;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
use minijinja::context;
use serde::Deserialize;
use std::collections::BTreeSet;
use walleot_api::Currency;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/wallet", get(show))
        .route("/wallet/threshold", post(set_threshold))
        .route("/wallet/credits", post(add_credits))
        .route("/wallet/vouchers", post(redeem))
        .route("/wallet/signout", post(sign_out))
        .route("/wallet/totp", get(totp_form).post(totp_confirm))
        .route("/wallet/mandates/{id}/revoke", post(revoke_mandate))
}

/// A mandate's terms in words: "up to 1.00 USD a call, 5.00 USD a day; until 2026-12-26".
pub(super) fn terms_text(mandate: &MandateRecord) -> String {
    let currency = mandate.currency;
    let limits = &mandate.limits;
    let mut parts = Vec::new();
    if let Some(max) = limits.per_call {
        parts.push(format!("{} a call", currency.format_amount(max)));
    }
    if let Some((period, max)) = limits.period {
        parts.push(format!("{} a {period}", currency.format_amount(max)));
    }
    if let Some(max) = limits.total {
        parts.push(format!("{} in all", currency.format_amount(max)));
    }
    format!(
        "up to {}; until {}",
        parts.join(", "),
        &rfc3339(mandate.expires_at)[..10]
    )
}

fn parse_currency(raw: &str) -> Result<Currency, PageError> {
    raw.parse()
        .map_err(|e: walleot_api::UnknownCurrency| PageError::BadRequest(e.to_string()))
}

#[derive(Deserialize, Default)]
struct Notice {
    notice: Option<String>,
}

/// Fixed texts named by `?notice=`, so that no text of a link reaches the page.
fn notice_text(key: Option<&str>) -> Option<&'static str> {
    match key? {
        "credits" => Some("Test credits added."),
        "voucher" => Some("Voucher redeemed."),
        "threshold" => Some("Auto-approve limit saved."),
        "totp" => Some("Authenticator app added."),
        "revoked" => Some("Mandate revoked: its merchant asks you again from now on."),
        _ => None,
    }
}

async fn show(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(notice): Query<Notice>,
) -> Result<Response, PageError> {
    wallet_page(
        &state,
        &visitor,
        notice_text(notice.notice.as_deref()),
        None,
    )
    .await
}

async fn wallet_page(
    state: &AppState,
    visitor: &Visitor,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let Some(payer) = &visitor.payer else {
        return Ok(visitor.render(
            state,
            StatusCode::OK,
            "no_wallet.html",
            context! { title => "Wallet" },
        ));
    };
    let accounts = state.wallets.balances(&payer.id).await?;
    let balances: Vec<_> = accounts
        .iter()
        .map(|a| {
            context! {
                mode => if a.book.livemode { "Live" } else { "Test" },
                currency => a.book.currency.code().to_ascii_uppercase(),
                available => a.book.currency.format_amount(a.available()),
            }
        })
        .collect();
    let mut currencies: BTreeSet<Currency> = accounts.iter().map(|a| a.book.currency).collect();
    currencies.insert(Currency::USD);
    let mut thresholds = Vec::new();
    for currency in currencies {
        let amount = state.wallets.threshold(&payer.id, currency).await?;
        let shown = currency.format_amount(amount);
        thresholds.push(context! {
            currency => currency.code(),
            code => currency.code().to_ascii_uppercase(),
            amount => shown.split(' ').next().unwrap_or("0").to_string(),
        });
    }
    let history: Vec<_> = state
        .wallets
        .history(&payer.id)
        .await?
        .into_iter()
        .map(|h| {
            let what = match (&h.merchant_name, &h.description, h.transfer.kind) {
                (Some(m), Some(d), _) => format!("{m}: {d}"),
                (Some(m), None, _) => m.clone(),
                (None, _, TransferKind::SandboxCredit) => "Test credits".into(),
                (None, _, TransferKind::Voucher) => "Voucher".into(),
                (None, _, other) => other.as_str().to_string(),
            };
            let mode = if h.transfer.book.livemode {
                ""
            } else {
                " (test)"
            };
            let mode = if h.mandate_id.is_some() {
                format!("{mode}, under your mandate")
            } else {
                mode.to_string()
            };
            context! {
                when => rfc3339(h.transfer.created_at).replace('T', " ").replace('Z', ""),
                what => format!("{what}{mode}"),
                amount => h.transfer.book.currency.format_amount(h.signed_amount),
                direction => if h.signed_amount > 0 { "in" } else { "out" },
            }
        })
        .collect();
    let now = state.clock.now_ms();
    let mut mandates = Vec::new();
    for (mandate, usage) in state.mandates.of_payer(&payer.id).await? {
        let (_, merchant) = state.sessions.for_checkout(&mandate.granted_with).await?;
        let currency = mandate.currency;
        let status = mandate.status_at(now);
        mandates.push(context! {
            id => mandate.id.clone(),
            merchant => merchant,
            customer => mandate.customer.clone(),
            terms => terms_text(&mandate),
            test_mode => !mandate.livemode,
            status => status.as_str(),
            active => status == walleot_api::MandateStatus::Active,
            spent => currency.format_amount(if mandate.limits.period.is_some() { usage.in_period } else { usage.total }),
            period => mandate.limits.period.map(|(p, _)| p.as_str()),
            remaining => mandate.remaining(&usage, now).map(|r| currency.format_amount(r)),
        });
    }
    let factors = state.factors.summary(&payer.id).await?;
    Ok(visitor.render(
        state,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "wallet.html",
        context! {
            title => "Wallet", balances, thresholds, history, mandates, notice, error,
            passkeys => factors.passkeys, totp => factors.totp,
            auto_per_hour => state.wallets.policy().auto_approvals_per_hour,
        },
    ))
}

/// Runs a signed-in payer's form: `act`, then returns where asked; a refusal shows the
/// wallet page with its reason.
async fn wallet_form<F, Fut>(
    state: &AppState,
    visitor: Visitor,
    return_to: Option<&str>,
    notice: &str,
    act: F,
) -> Result<Response, PageError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), PageError>>,
{
    let Some(payer) = &visitor.payer else {
        return Ok(visitor.redirect(state, "/wallet"));
    };
    match act(payer.id.clone()).await {
        Ok(()) => {
            let to = safe_return(return_to, &format!("/wallet?notice={notice}"));
            Ok(visitor.redirect(state, &to))
        }
        Err(PageError::BadRequest(message)) => {
            wallet_page(state, &visitor, None, Some(message)).await
        }
        Err(other) => Err(other),
    }
}

#[derive(Deserialize)]
struct ThresholdForm {
    csrf: String,
    currency: String,
    amount: String,
}

async fn set_threshold(
    State(state): State<AppState>,
    CheckedForm { visitor, form }: CheckedForm<ThresholdForm>,
) -> Result<Response, PageError> {
    let wallets = state.wallets.clone();
    wallet_form(&state, visitor, None, "threshold", |payer| async move {
        let currency = parse_currency(&form.currency)?;
        let amount = currency
            .parse_major(&form.amount)
            .map_err(PageError::BadRequest)?;
        wallets.set_threshold(&payer, currency, amount).await?;
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
struct CreditsForm {
    csrf: String,
    currency: String,
    return_to: Option<String>,
}

async fn add_credits(
    State(state): State<AppState>,
    client: ClientAddr,
    CheckedForm { visitor, form }: CheckedForm<CreditsForm>,
) -> Result<Response, PageError> {
    let request = TopUpRequest {
        currency: Some(parse_currency(&form.currency)?),
        code: None,
    };
    let to = form.return_to.as_deref();
    top_up(&state, &client, visitor, to, "credits", "sandbox", request).await
}

/// Tops up the signed-in payer's wallet from the named source.
async fn top_up(
    state: &AppState,
    client: &ClientAddr,
    visitor: Visitor,
    return_to: Option<&str>,
    notice: &str,
    source: &str,
    request: TopUpRequest,
) -> Result<Response, PageError> {
    let source = state
        .topups
        .source(source)
        .ok_or(PageError::NotFound)?
        .clone();
    wallet_form(state, visitor, return_to, notice, |payer| async move {
        spend(state, Bucket::TopUps, client).await?;
        source.top_up(&payer, &request).await?;
        Ok(())
    })
    .await
}

#[derive(Deserialize)]
struct VoucherForm {
    csrf: String,
    code: String,
    return_to: Option<String>,
}

async fn redeem(
    State(state): State<AppState>,
    client: ClientAddr,
    CheckedForm { visitor, form }: CheckedForm<VoucherForm>,
) -> Result<Response, PageError> {
    let request = TopUpRequest {
        currency: None,
        code: Some(form.code.clone()),
    };
    let to = form.return_to.as_deref();
    top_up(&state, &client, visitor, to, "voucher", "voucher", request).await
}

#[derive(Deserialize)]
struct SignOutForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    CheckedForm { mut visitor, .. }: CheckedForm<SignOutForm>,
) -> Result<Response, PageError> {
    visitor.sign_out(&state).await?;
    Ok(visitor.redirect(&state, "/wallet"))
}

#[derive(Deserialize, Default)]
struct TotpQuery {
    return_to: Option<String>,
}

/// The enrolment form carries its secret, sealed so that it cannot be swapped; nothing
/// is stored until the payer proves the app shows the right codes.
fn seal(state: &AppState, secret: &str, payer: Option<&str>) -> String {
    state.pages.mac(
        "totp-enrolment",
        &format!("{secret}:{}", payer.unwrap_or("")),
    )
}

async fn totp_form(
    State(state): State<AppState>,
    visitor: Visitor,
    Query(query): Query<TotpQuery>,
) -> Result<Response, PageError> {
    let secret = totp::secret_text(&totp::new_secret());
    render_totp(&state, &visitor, &secret, query.return_to.as_deref(), None)
}

fn render_totp(
    state: &AppState,
    visitor: &Visitor,
    secret: &str,
    return_to: Option<&str>,
    error: Option<&str>,
) -> Result<Response, PageError> {
    let bytes = totp::secret_from_text(secret).ok_or(PageError::Forbidden)?;
    let account = visitor
        .payer
        .as_ref()
        .map(|p| p.id.as_str())
        .unwrap_or("wallet");
    let uri = totp::provisioning_uri(&bytes, account);
    let qr_svg = qrcode::QrCode::new(uri.as_bytes())
        .map_err(|_| PageError::Internal)?
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(200, 200)
        .build();
    let sealed = seal(state, secret, visitor.payer.as_ref().map(|p| p.id.as_str()));
    Ok(visitor.render(
        state,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "totp.html",
        context! {
            title => "Authenticator app",
            secret, qr_svg, seal => sealed,
            return_to => safe_return(return_to, "/wallet"),
            error,
        },
    ))
}

#[derive(Deserialize)]
struct TotpConfirm {
    csrf: String,
    secret: String,
    seal: String,
    code: String,
    return_to: Option<String>,
}

csrf_forms!(
    ThresholdForm,
    CreditsForm,
    VoucherForm,
    SignOutForm,
    TotpConfirm
);

async fn totp_confirm(
    State(state): State<AppState>,
    client: ClientAddr,
    CheckedForm { mut visitor, form }: CheckedForm<TotpConfirm>,
) -> Result<Response, PageError> {
    spend(&state, Bucket::Enrolments, &client).await?;
    let payer_id = visitor.payer.as_ref().map(|p| p.id.clone());
    let expected = seal(&state, &form.secret, payer_id.as_deref());
    if !bool::from(subtle::ConstantTimeEq::ct_eq(
        expected.as_bytes(),
        form.seal.as_bytes(),
    )) {
        return Err(PageError::Forbidden);
    }
    let secret = totp::secret_from_text(&form.secret).ok_or(PageError::Forbidden)?;
    let Some(step) = state.factors.check_new_code(&secret, &form.code) else {
        let message = "That code is not right. Check the app and try the current code.";
        let to = form.return_to.as_deref();
        return render_totp(&state, &visitor, &form.secret, to, Some(message));
    };
    let payer = match &visitor.payer {
        Some(p) => p.clone(),
        None => {
            spend(&state, Bucket::Wallets, &client).await?;
            state.wallets.register().await?
        }
    };
    state.factors.add_totp(&payer.id, secret, step).await?;
    if visitor.payer.is_none() {
        visitor.sign_in(&state, payer).await?;
    }
    let to = safe_return(form.return_to.as_deref(), "/wallet?notice=totp");
    Ok(visitor.redirect(&state, &to))
}

#[derive(Deserialize)]
struct RevokeForm {
    csrf: String,
}

csrf_forms!(RevokeForm);

/// "Revoke": one click, effective at once; the merchant's next charge asks again.
async fn revoke_mandate(
    State(state): State<AppState>,
    super::PagePath(id): super::PagePath,
    CheckedForm { visitor, .. }: CheckedForm<RevokeForm>,
) -> Result<Response, PageError> {
    let mandates = state.mandates.clone();
    wallet_form(&state, visitor, None, "revoked", |payer| async move {
        mandates.revoke(&payer, &id).await?;
        Ok(())
    })
    .await
}
