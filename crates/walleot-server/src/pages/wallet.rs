//! `/wallet`: balances, history, the auto-approve threshold, top-ups, second factors.

use super::{safe_return, spend, ClientAddr, PageError, Visitor};
use crate::app::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::factors::totp;
use crate::domain::payers::TotpRecord;
use crate::domain::topups::TopUpRequest;
use crate::ratelimit::Bucket;
use axum::extract::rejection::FormRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
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
}

fn parse_currency(raw: &str) -> Result<Currency, PageError> {
    raw.parse()
        .map_err(|e: walleot_api::UnknownCurrency| PageError::BadRequest(e.to_string()))
}

fn answer(result: Result<Response, PageError>) -> Response {
    result.unwrap_or_else(IntoResponse::into_response)
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
        _ => None,
    }
}

async fn show(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(notice): Query<Notice>,
) -> Response {
    answer(
        wallet_page(
            &state,
            &headers,
            notice_text(notice.notice.as_deref()),
            None,
        )
        .await,
    )
}

async fn wallet_page(
    state: &AppState,
    headers: &HeaderMap,
    notice: Option<&str>,
    error: Option<String>,
) -> Result<Response, PageError> {
    let visitor = Visitor::from_headers(state, headers).await?;
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
                mode => if a.livemode { "Live" } else { "Test" },
                currency => a.currency.code().to_ascii_uppercase(),
                available => a.currency.format_amount(a.available()),
            }
        })
        .collect();
    let mut currencies: BTreeSet<Currency> = accounts.iter().map(|a| a.currency).collect();
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
            let what = match (&h.merchant_name, &h.description, h.transfer.kind.as_str()) {
                (Some(m), Some(d), _) => format!("{m}: {d}"),
                (Some(m), None, _) => m.clone(),
                (None, _, "sandbox_credit") => "Test credits".into(),
                (None, _, "voucher") => "Voucher".into(),
                (None, _, other) => other.to_string(),
            };
            let mode = if h.transfer.livemode { "" } else { " (test)" };
            context! {
                when => rfc3339(h.transfer.created_at).replace('T', " ").replace('Z', ""),
                what => format!("{what}{mode}"),
                amount => h.transfer.currency.format_amount(h.signed_amount),
                direction => if h.signed_amount > 0 { "in" } else { "out" },
            }
        })
        .collect();
    let passkeys = state.store.passkeys_of(&payer.id).await?.len();
    let totp = state
        .store
        .totp_of(&payer.id)
        .await?
        .is_some_and(|t| t.confirmed);
    Ok(visitor.render(
        state,
        if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        },
        "wallet.html",
        context! {
            title => "Wallet", balances, thresholds, history, passkeys, totp, notice, error,
            auto_per_hour => state.wallets.policy().auto_approvals_per_hour,
        },
    ))
}

/// Runs a signed-in payer's form: checks CSRF, then `act`, then returns where asked.
async fn wallet_form<F, Fut>(
    state: &AppState,
    headers: &HeaderMap,
    csrf: &str,
    return_to: Option<&str>,
    notice: &str,
    act: F,
) -> Result<Response, PageError>
where
    F: FnOnce(String) -> Fut,
    Fut: std::future::Future<Output = Result<(), PageError>>,
{
    let visitor = Visitor::from_headers(state, headers).await?;
    visitor.check_csrf(state, headers, csrf)?;
    let Some(payer) = &visitor.payer else {
        return Ok(visitor.redirect(state, "/wallet"));
    };
    match act(payer.id.clone()).await {
        Ok(()) => {
            let to = safe_return(return_to, &format!("/wallet?notice={notice}"));
            Ok(visitor.redirect(state, &to))
        }
        Err(PageError::BadRequest(message)) => {
            wallet_page(state, headers, None, Some(message)).await
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
    headers: HeaderMap,
    form: Result<Form<ThresholdForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return PageError::Forbidden.into_response();
    };
    let wallets = state.wallets.clone();
    answer(
        wallet_form(
            &state,
            &headers,
            &form.csrf,
            None,
            "threshold",
            |payer| async move {
                let currency = parse_currency(&form.currency)?;
                let amount = currency
                    .parse_major(&form.amount)
                    .map_err(PageError::BadRequest)?;
                wallets.set_threshold(&payer, currency, amount).await?;
                Ok(())
            },
        )
        .await,
    )
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
    headers: HeaderMap,
    form: Result<Form<CreditsForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return PageError::Forbidden.into_response();
    };
    let request = match parse_currency(&form.currency) {
        Ok(currency) => TopUpRequest {
            currency: Some(currency),
            code: None,
        },
        Err(e) => return e.into_response(),
    };
    let to = form.return_to.as_deref();
    answer(
        top_up(
            &state, &client, &headers, &form.csrf, to, "credits", "sandbox", request,
        )
        .await,
    )
}

/// Tops up the signed-in payer's wallet from the named source.
#[allow(clippy::too_many_arguments)]
async fn top_up(
    state: &AppState,
    client: &ClientAddr,
    headers: &HeaderMap,
    csrf: &str,
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
    wallet_form(
        state,
        headers,
        csrf,
        return_to,
        notice,
        |payer| async move {
            spend(state, Bucket::TopUps, client)?;
            source
                .top_up(&payer, &request)
                .await
                .map(|_| ())
                .map_err(|e| match e {
                    crate::domain::DomainError::Store(e) => e.into(),
                    other => PageError::BadRequest(
                        other.to_string().trim_start_matches("code: ").to_string(),
                    ),
                })
        },
    )
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
    headers: HeaderMap,
    form: Result<Form<VoucherForm>, FormRejection>,
) -> Response {
    let Ok(Form(form)) = form else {
        return PageError::Forbidden.into_response();
    };
    let request = TopUpRequest {
        currency: None,
        code: Some(form.code.clone()),
    };
    let to = form.return_to.as_deref();
    answer(
        top_up(
            &state, &client, &headers, &form.csrf, to, "voucher", "voucher", request,
        )
        .await,
    )
}

#[derive(Deserialize)]
struct SignOutForm {
    csrf: String,
}

async fn sign_out(
    State(state): State<AppState>,
    headers: HeaderMap,
    form: Result<Form<SignOutForm>, FormRejection>,
) -> Response {
    answer(
        async {
            let mut visitor = Visitor::from_headers(&state, &headers).await?;
            let Ok(Form(form)) = form else {
                return Err(PageError::Forbidden);
            };
            visitor.check_csrf(&state, &headers, &form.csrf)?;
            visitor.sign_out(&state).await?;
            Ok(visitor.redirect(&state, "/wallet"))
        }
        .await,
    )
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
    headers: HeaderMap,
    Query(query): Query<TotpQuery>,
) -> Response {
    answer(
        async {
            let visitor = Visitor::from_headers(&state, &headers).await?;
            let secret = totp::secret_text(&totp::new_secret());
            render_totp(&state, &visitor, &secret, query.return_to.as_deref(), None)
        }
        .await,
    )
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

async fn totp_confirm(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<TotpConfirm>, FormRejection>,
) -> Response {
    answer(
        async {
            let mut visitor = Visitor::from_headers(&state, &headers).await?;
            let Ok(Form(form)) = form else {
                return Err(PageError::Forbidden);
            };
            visitor.check_csrf(&state, &headers, &form.csrf)?;
            spend(&state, Bucket::Enrolments, &client)?;
            let payer_id = visitor.payer.as_ref().map(|p| p.id.clone());
            let expected = seal(&state, &form.secret, payer_id.as_deref());
            if !bool::from(subtle::ConstantTimeEq::ct_eq(
                expected.as_bytes(),
                form.seal.as_bytes(),
            )) {
                return Err(PageError::Forbidden);
            }
            let secret = totp::secret_from_text(&form.secret).ok_or(PageError::Forbidden)?;
            let now = state.clock.now_ms();
            let Some(step) = totp::matching_step(&secret, &form.code, now) else {
                let message = "That code is not right. Check the app and try the current code.";
                return render_totp(
                    &state,
                    &visitor,
                    &form.secret,
                    form.return_to.as_deref(),
                    Some(message),
                );
            };
            let payer = match &visitor.payer {
                Some(p) => p.clone(),
                None => {
                    spend(&state, Bucket::Wallets, &client)?;
                    state.wallets.register().await?
                }
            };
            state
                .store
                .put_totp(&TotpRecord {
                    payer_id: payer.id.clone(),
                    secret,
                    confirmed: true,
                    last_step: step,
                    created_at: now,
                })
                .await?;
            if visitor.payer.is_none() {
                visitor.sign_in(&state, payer).await?;
            }
            let to = safe_return(form.return_to.as_deref(), "/wallet?notice=totp");
            Ok(visitor.redirect(&state, &to))
        }
        .await,
    )
}
