//! `/checkout/{id}`: what the payer sees when a tool asks for money.
//!
//! A charge within the payer's auto-approve limit pays itself only when the payer
//! opened the page; opened any other way (another site's redirect or script, a
//! prefetch), the page offers a one-click "Pay" form instead. Either way such payments
//! without a second factor are limited per merchant and hour (`WalletPolicy`).

use super::{spend, ClientAddr, PageError, PagePath, Visitor};
use crate::app::AppState;
use crate::domain::clock::rfc3339;
use crate::domain::factors::totp;
use crate::domain::payers::{ApprovalMethod, Payer};
use crate::domain::sessions::SessionRecord;
use crate::domain::wallets::{Assessment, AutoPayment, CheckoutStep, PayError};
use crate::ratelimit::Bucket;
use axum::extract::rejection::FormRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use minijinja::context;
use serde::Deserialize;
use serde_json::json;
use walleot_api::SessionStatus;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/checkout/{id}", get(show))
        .route("/checkout/{id}/decline", post(decline))
        .route("/checkout/{id}/approve", post(approve_with_code))
        .route("/checkout/{id}/pay", post(pay_with_click))
}

/// Whether the request opening the page is a top-level navigation the payer started
/// (then its `Sec-Fetch-Site`, kept as evidence), by its Fetch Metadata, headers no
/// page can set: typed, bookmarked or reached from a
/// page of this site (`Sec-Fetch-Site: none` or `same-origin`), or a link the payer
/// clicked elsewhere (`Sec-Fetch-User: ?1` on a navigation). Another site's redirect or
/// script, a frame, a prefetch, or a browser that sends no Fetch Metadata gets the pay
/// button instead: opening a link must not be enough for someone else to charge.
fn started_by_payer(headers: &HeaderMap) -> Option<&'static str> {
    let get = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.trim().to_ascii_lowercase())
    };
    let prefetch = ["sec-purpose", "purpose"]
        .iter()
        .any(|name| get(name).is_some_and(|v| v.contains("prefetch") || v.contains("prerender")));
    let mode = get("sec-fetch-mode");
    let navigation = mode.as_deref().is_none_or(|m| m == "navigate")
        && get("sec-fetch-dest").is_none_or(|d| d == "document");
    if prefetch || !navigation {
        return None;
    }
    let clicked =
        get("sec-fetch-user").as_deref() == Some("?1") && mode.as_deref() == Some("navigate");
    match get("sec-fetch-site").as_deref() {
        Some("none") => Some("none"),
        Some("same-origin") => Some("same-origin"),
        Some("same-site") if clicked => Some("same-site"),
        Some("cross-site") if clicked => Some("cross-site"),
        _ => None,
    }
}

async fn show(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    headers: HeaderMap,
) -> Response {
    match show_inner(&state, &id, &headers).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    }
}

async fn show_inner(
    state: &AppState,
    id: &str,
    headers: &HeaderMap,
) -> Result<Response, PageError> {
    let visitor = Visitor::from_headers(state, headers).await?;
    let (session, merchant) = state.sessions.for_checkout(id).await?;
    let mut assessed = None;
    if let Some(payer) = &visitor.payer {
        let assessment = state.wallets.assess(payer, &session).await?;
        let started = started_by_payer(headers);
        if let (CheckoutStep::AutoApprove, Some(site)) = (&assessment.step, started) {
            // Within the payer's own limit, opened by the payer: paid as the page opens.
            let evidence = json!({"trigger": "navigation", "secFetchSite": site}).to_string();
            match state
                .wallets
                .pay_without_factor(&session.id, &payer.id, evidence)
                .await
            {
                Ok(AutoPayment::Paid(paid)) => {
                    return page(state, &visitor, &paid, &merchant, None, true, None).await
                }
                Err(PayError::Store(e)) => return Err(e.into()),
                // The hourly number ran out, or a race was lost: show what now stands.
                Ok(AutoPayment::LimitReached) | Err(_) => {}
            }
            let (session, merchant) = state.sessions.for_checkout(id).await?;
            return page(state, &visitor, &session, &merchant, None, false, None).await;
        }
        assessed = Some(assessment);
    }
    page(state, &visitor, &session, &merchant, None, false, assessed).await
}

async fn page(
    state: &AppState,
    visitor: &Visitor,
    session: &SessionRecord,
    merchant: &str,
    error: Option<String>,
    auto: bool,
    assessed: Option<Assessment>,
) -> Result<Response, PageError> {
    let currency = session.currency;
    let now = state.clock.now_ms();
    let mut view = context! {
        title => format!("Pay {}", merchant),
        id => session.id.clone(),
        merchant => merchant,
        amount => currency.format_amount(session.amount),
        description => session.description.clone(),
        test_mode => !session.livemode,
        currency => currency.code(),
        auto => auto,
        error => error,
    };
    let status = session.status_at(now);
    let state_name = match (status, &visitor.payer) {
        (SessionStatus::Pending, None) => "register".to_string(),
        (SessionStatus::Pending, Some(payer)) => {
            let extra = pending_view(state, payer, session, assessed).await?;
            let name = extra
                .get_attr("state")
                .ok()
                .map(|v| v.to_string())
                .unwrap_or_default();
            view = context! { ..extra, ..view };
            name
        }
        (other, _) => other.as_str().to_string(),
    };
    if auto {
        let payer = visitor
            .payer
            .as_ref()
            .map(|p| p.id.clone())
            .unwrap_or_default();
        let threshold = state.wallets.threshold(&payer, currency).await?;
        view = context! { threshold => currency.format_amount(threshold), ..view };
    }
    Ok(visitor.render(
        state,
        StatusCode::OK,
        "checkout.html",
        context! { state => state_name, ..view },
    ))
}

/// The part of the view that depends on the payer of a pending session.
async fn pending_view(
    state: &AppState,
    payer: &Payer,
    session: &SessionRecord,
    assessed: Option<Assessment>,
) -> Result<minijinja::Value, PageError> {
    let currency = session.currency;
    let Assessment {
        step,
        available,
        threshold,
        auto_limit_reached,
    } = match assessed {
        Some(known) => known,
        None => state.wallets.assess(payer, session).await?,
    };
    let has_passkey = !state.store.passkeys_of(&payer.id).await?.is_empty();
    let has_totp = state
        .store
        .totp_of(&payer.id)
        .await?
        .is_some_and(|t| t.confirmed);
    let (name, until) = match step {
        // Not paid as the page opened: one click on "Pay", no second factor.
        CheckoutStep::AutoApprove => ("confirm", None),
        CheckoutStep::NeedsApproval => ("approve", None),
        CheckoutStep::Locked { until } => ("locked", Some(rfc3339(until))),
        CheckoutStep::InsufficientFunds { .. } => ("insufficient", None),
        CheckoutStep::Closed(status) => (status.as_str(), None),
    };
    Ok(context! {
        state => name,
        until => until,
        available => currency.format_amount(available),
        threshold => currency.format_amount(threshold),
        has_passkey => has_passkey,
        has_totp => has_totp,
        auto_limit_reached => auto_limit_reached,
        auto_per_hour => state.wallets.policy().auto_approvals_per_hour,
    })
}

/// "Pay": one deliberate click of the payer, on this site's own form, for a charge
/// within the auto-approve limit (and its hourly number); no second factor. Anything
/// else goes back to the page, which asks for what it needs.
async fn pay_with_click(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    client: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let result = async {
        let visitor = Visitor::from_headers(&state, &headers).await?;
        let Ok(Form(form)) = form else {
            return Err(PageError::Forbidden);
        };
        visitor.check_csrf(&state, &headers, &form.csrf)?;
        spend(&state, Bucket::Approvals, &client)?;
        let (session, _) = state.sessions.for_checkout(&id).await?;
        let back = format!("/checkout/{}", session.id);
        let Some(payer) = visitor.payer.clone() else {
            return Ok(visitor.redirect(&state, &back));
        };
        if state.wallets.step(&payer, &session).await? == CheckoutStep::AutoApprove {
            let evidence = json!({"trigger": "click"}).to_string();
            match state
                .wallets
                .pay_without_factor(&session.id, &payer.id, evidence)
                .await
            {
                Err(PayError::Store(e)) => return Err(e.into()),
                Err(PayError::NotFound) => return Err(PageError::NotFound),
                // Paid, or not payable this way after all: the page shows which.
                Ok(_) | Err(_) => {}
            }
        }
        Ok(visitor.redirect(&state, &back))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn decline(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    headers: HeaderMap,
    form: Result<Form<CsrfForm>, FormRejection>,
) -> Response {
    let result = async {
        let visitor = Visitor::from_headers(&state, &headers).await?;
        let Ok(Form(form)) = form else {
            return Err(PageError::Forbidden);
        };
        visitor.check_csrf(&state, &headers, &form.csrf)?;
        let (session, _) = state.sessions.for_checkout(&id).await?;
        if session.status == SessionStatus::Pending {
            // A payment that completed meanwhile stays paid; the page shows it.
            let _ = state.sessions.decline(&session).await;
        }
        Ok(visitor.redirect(&state, &format!("/checkout/{id}")))
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

/// One tap with an authenticator-app code, where the payer has no passkey.
async fn approve_with_code(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    client: ClientAddr,
    headers: HeaderMap,
    form: Result<Form<CodeForm>, FormRejection>,
) -> Response {
    let result = async {
        let visitor = Visitor::from_headers(&state, &headers).await?;
        let Ok(Form(form)) = form else {
            return Err(PageError::Forbidden);
        };
        visitor.check_csrf(&state, &headers, &form.csrf)?;
        spend(&state, Bucket::Approvals, &client)?;
        let (session, merchant) = state.sessions.for_checkout(&id).await?;
        let Some(payer) = visitor.payer.clone() else {
            return Ok(visitor.redirect(&state, &format!("/checkout/{}", session.id)));
        };
        if payer.locked_until > state.clock.now_ms() {
            return page(&state, &visitor, &session, &merchant, None, false, None).await;
        }
        let record = state
            .store
            .totp_of(&payer.id)
            .await?
            .filter(|t| t.confirmed);
        let now = state.clock.now_ms();
        let step = record
            .as_ref()
            .and_then(|t| totp::matching_step(&t.secret, &form.code, now));
        let accepted = match step {
            Some(step) => state.store.use_totp_step(&payer.id, step, true).await?,
            None => false,
        };
        if !accepted {
            let payer = state.wallets.note_failed_attempt(&payer.id).await?;
            let visitor = Visitor {
                payer: Some(payer),
                ..visitor
            };
            let message = "That code is not right, or was already used. Try the next one.";
            return page(
                &state,
                &visitor,
                &session,
                &merchant,
                Some(message.into()),
                false,
                None,
            )
            .await;
        }
        state.wallets.clear_failed_attempts(&payer.id).await?;
        let evidence = serde_json::json!({"factor": "totp", "step": step}).to_string();
        match state
            .wallets
            .pay(&session.id, &payer.id, ApprovalMethod::Totp, Some(evidence))
            .await
        {
            Ok(_) | Err(PayError::Closed(_)) | Err(PayError::InsufficientFunds { .. }) => {
                Ok(visitor.redirect(&state, &format!("/checkout/{id}")))
            }
            Err(PayError::NotFound) => Err(PageError::NotFound),
            Err(PayError::Store(e)) => Err(e.into()),
        }
    }
    .await;
    result.unwrap_or_else(IntoResponse::into_response)
}
