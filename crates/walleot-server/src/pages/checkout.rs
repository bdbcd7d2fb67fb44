//! `/checkout/{id}`: what the payer sees when a tool asks for money.
//!
//! A charge within the payer's auto-approve limit pays itself only when the payer
//! opened the page; opened any other way (another site's redirect or script, a
//! prefetch), the page offers a one-click "Pay" form instead. Either way such payments
//! without a second factor are limited per merchant and hour (`WalletPolicy`).

use super::{csrf_forms, spend, CheckedForm, ClientAddr, PageError, PagePath, Visitor};
use crate::app::AppState;
use crate::domain::approvals::{Approval, Factor};
use crate::domain::clock::{rfc3339, DAY_MS};
use crate::domain::mandates::{parse_terms, MandateTerms, Offer, DEFAULT_VALIDITY_MS};
use crate::domain::payers::Payer;
use crate::domain::sessions::SessionRecord;
use crate::domain::wallets::{Assessment, AutoPayment, CheckoutStep};
use crate::domain::DomainError;
use crate::ratelimit::Bucket;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use axum::routing::{get, post};
use axum::Router;
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
        .route("/checkout/{id}/mandate", post(grant_with_code))
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
    visitor: Visitor,
    headers: HeaderMap,
) -> Result<Response, PageError> {
    let (session, merchant) = state.sessions.for_checkout(&id).await?;
    let mut assessed = None;
    if let Some(payer) = &visitor.payer {
        let assessment = state.wallets.assess(payer, &session).await?;
        let started = started_by_payer(&headers);
        if let (CheckoutStep::AutoApprove, Some(site)) = (&assessment.step, started) {
            // Within the payer's own limit, opened by the payer: paid as the page opens.
            let evidence = json!({"trigger": "navigation", "secFetchSite": site}).to_string();
            match state
                .wallets
                .pay_without_factor(&session, &payer.id, evidence)
                .await
            {
                Ok(AutoPayment::Paid(paid)) => {
                    return page(&state, &visitor, &paid, &merchant, None, true, None).await
                }
                Err(e @ DomainError::Store(_)) => return Err(e.into()),
                // The hourly number ran out, or a race was lost: show what now stands.
                Ok(AutoPayment::LimitReached) | Err(_) => {}
            }
            let (session, merchant) = state.sessions.for_checkout(&id).await?;
            return page(&state, &visitor, &session, &merchant, None, false, None).await;
        }
        assessed = Some(assessment);
    }
    page(&state, &visitor, &session, &merchant, None, false, assessed).await
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
        (SessionStatus::Paid, Some(payer)) => {
            if let Some(offer) = state.mandates.offer(&payer.id, session).await? {
                view = context! { ..offer_view(state, payer, session, offer).await?, ..view };
            }
            SessionStatus::Paid.as_str().to_string()
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
    let factors = state.factors.summary(&payer.id).await?;
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
        has_passkey => factors.passkeys > 0,
        has_totp => factors.totp,
        auto_limit_reached => auto_limit_reached,
        auto_per_hour => state.wallets.policy().auto_approvals_per_hour,
    })
}

/// The mandate part of a paid checkout: the form to grant one, prefilled, or the one
/// already granted.
async fn offer_view(
    state: &AppState,
    payer: &Payer,
    session: &SessionRecord,
    offer: Offer,
) -> Result<minijinja::Value, PageError> {
    let currency = session.currency;
    let major = |minor: i64| {
        let shown = currency.format_amount(minor);
        shown.split(' ').next().unwrap_or_default().to_string()
    };
    Ok(match offer {
        Offer::Granted(mandate) => context! {
            granted => super::wallet::terms_text(&mandate),
        },
        Offer::Open { per_call, per_day } => {
            let factors = state.factors.summary(&payer.id).await?;
            context! {
                offer => true,
                customer => session.customer.clone(),
                code => currency.code().to_ascii_uppercase(),
                per_call => major(per_call),
                per_day => major(per_day),
                days => DEFAULT_VALIDITY_MS / DAY_MS,
                has_passkey => factors.passkeys > 0,
                has_totp => factors.totp,
            }
        }
    })
}

/// The terms of the grant form, as the payer filled them in.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct TermsFields {
    #[serde(default)]
    pub per_call: String,
    #[serde(default)]
    pub period: String,
    #[serde(default)]
    pub period_limit: String,
    #[serde(default)]
    pub total: String,
}

impl TermsFields {
    /// The terms, in the session's currency, until `expires_at`.
    pub fn terms(
        &self,
        session: &SessionRecord,
        expires_at: i64,
    ) -> Result<MandateTerms, DomainError> {
        parse_terms(
            session.currency,
            &self.per_call,
            &self.period,
            &self.period_limit,
            &self.total,
            expires_at,
        )
    }
}

/// The instant a grant of `days` days made now ends.
pub(super) fn expiry_in(state: &AppState, days: &str) -> Result<i64, DomainError> {
    let days: i64 = days
        .trim()
        .parse()
        .ok()
        .filter(|d| (1..=365).contains(d))
        .ok_or_else(|| {
            DomainError::invalid("days", "must be a whole number of days from 1 to 365")
        })?;
    Ok(state.clock.now_ms() + days * DAY_MS)
}

#[derive(Deserialize)]
struct GrantForm {
    csrf: String,
    #[serde(flatten)]
    fields: TermsFields,
    days: String,
    code: String,
}

/// Grants the mandate offered on a paid checkout with an authenticator-app code.
async fn grant_with_code(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    client: ClientAddr,
    CheckedForm { visitor, form }: CheckedForm<GrantForm>,
) -> Result<Response, PageError> {
    spend(&state, Bucket::Approvals, &client).await?;
    let (session, merchant) = state.sessions.for_checkout(&id).await?;
    let back = format!("/checkout/{}", session.id);
    let Some(payer) = &visitor.payer else {
        return Ok(visitor.redirect(&state, &back));
    };
    let granted = async {
        let terms = form
            .fields
            .terms(&session, expiry_in(&state, &form.days)?)?;
        state
            .approvals
            .grant(
                payer,
                &session.id,
                &terms,
                Factor::Totp { code: &form.code },
            )
            .await
    }
    .await;
    let message = match granted {
        Ok(_) => return Ok(visitor.redirect(&state, &back)),
        Err(DomainError::Invalid { field, message }) => format!("{field}: {message}"),
        Err(DomainError::FactorRejected { .. }) => {
            "That code is not right, or was already used. Try the next one.".into()
        }
        Err(DomainError::Locked { .. }) => {
            "Too many failed attempts: granting is locked for a while.".into()
        }
        Err(other) => return Err(other.into()),
    };
    let payer = state.wallets.payer(&payer.id).await?;
    let visitor = Visitor { payer, ..visitor };
    page(
        &state,
        &visitor,
        &session,
        &merchant,
        Some(message),
        false,
        None,
    )
    .await
}

/// "Pay": one deliberate click of the payer, on this site's own form, for a charge
/// within the auto-approve limit (and its hourly number); no second factor. Anything
/// else goes back to the page, which asks for what it needs.
async fn pay_with_click(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    client: ClientAddr,
    CheckedForm { visitor, .. }: CheckedForm<PlainForm>,
) -> Result<Response, PageError> {
    spend(&state, Bucket::Approvals, &client).await?;
    let (session, _) = state.sessions.for_checkout(&id).await?;
    let back = format!("/checkout/{}", session.id);
    let Some(payer) = &visitor.payer else {
        return Ok(visitor.redirect(&state, &back));
    };
    if state.wallets.step(payer, &session).await? == CheckoutStep::AutoApprove {
        let evidence = json!({"trigger": "click"}).to_string();
        match state
            .wallets
            .pay_without_factor(&session, &payer.id, evidence)
            .await
        {
            // Paid, or not payable this way after all: the page shows which.
            Ok(_) | Err(DomainError::Closed(_) | DomainError::InsufficientFunds { .. }) => {}
            Err(other) => return Err(other.into()),
        }
    }
    Ok(visitor.redirect(&state, &back))
}

#[derive(Deserialize)]
struct PlainForm {
    csrf: String,
}

async fn decline(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    CheckedForm { visitor, .. }: CheckedForm<PlainForm>,
) -> Result<Response, PageError> {
    let (session, _) = state.sessions.for_checkout(&id).await?;
    if session.status == SessionStatus::Pending {
        // A payment that completed meanwhile stays paid; the page shows it.
        let _ = state.sessions.decline(&session).await;
    }
    Ok(visitor.redirect(&state, &format!("/checkout/{id}")))
}

#[derive(Deserialize)]
struct CodeForm {
    csrf: String,
    code: String,
}

csrf_forms!(PlainForm, CodeForm, GrantForm);

/// One tap with an authenticator-app code, where the payer has no passkey.
async fn approve_with_code(
    State(state): State<AppState>,
    PagePath(id): PagePath,
    client: ClientAddr,
    CheckedForm { visitor, form }: CheckedForm<CodeForm>,
) -> Result<Response, PageError> {
    spend(&state, Bucket::Approvals, &client).await?;
    let back = format!("/checkout/{id}");
    let Some(payer) = &visitor.payer else {
        let (session, _) = state.sessions.for_checkout(&id).await?;
        return Ok(visitor.redirect(&state, &format!("/checkout/{}", session.id)));
    };
    let approval = Approval::Totp {
        session_id: &id,
        code: &form.code,
    };
    match state.approvals.approve(payer, approval).await {
        // Paid, or the page shows why not (paid meanwhile, closed, short of funds).
        Ok(_) | Err(DomainError::Closed(_) | DomainError::InsufficientFunds { .. }) => {
            Ok(visitor.redirect(&state, &back))
        }
        Err(DomainError::Locked { .. }) => {
            let (session, merchant) = state.sessions.for_checkout(&id).await?;
            page(&state, &visitor, &session, &merchant, None, false, None).await
        }
        Err(DomainError::FactorRejected { .. }) => {
            // The page shows the failure count as it now stands.
            let (session, merchant) = state.sessions.for_checkout(&id).await?;
            let payer = state.wallets.payer(&payer.id).await?;
            let visitor = Visitor { payer, ..visitor };
            let message = "That code is not right, or was already used. Try the next one.";
            page(
                &state,
                &visitor,
                &session,
                &merchant,
                Some(message.into()),
                false,
                None,
            )
            .await
        }
        Err(other) => Err(other.into()),
    }
}
