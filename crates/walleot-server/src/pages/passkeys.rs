//! `/webauthn/…`: the JSON halves of the passkey ceremonies. The browser asks for
//! options, runs the ceremony, and sends the result back; errors answer in the API's
//! error shape.

use super::checkout::{expiry_in, TermsFields};
use super::{ClientAddr, PageError, Visitor};
use crate::app::AppState;
use crate::domain::approvals::{Approval, Factor, PasskeyAssertion};
use crate::domain::factors::webauthn::RelyingParty;
use crate::domain::factors::Attestation;
use crate::domain::payers::Payer;
use crate::domain::DomainError;
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::ratelimit::Bucket;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};
use walleot_api::{ErrorType, SessionStatus};

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webauthn/register/options", post(register_options))
        .route("/webauthn/register/finish", post(register_finish))
        .route("/webauthn/approve/options", post(approve_options))
        .route("/webauthn/approve/finish", post(approve_finish))
        .route("/webauthn/grant/options", post(grant_options))
        .route("/webauthn/grant/finish", post(grant_finish))
}

/// A page refusal in the API's error shape, for the page's script.
impl From<PageError> for ApiError {
    fn from(e: PageError) -> Self {
        match e {
            PageError::NotFound => ApiError::not_found("no such payment"),
            PageError::Forbidden => ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorType::Forbidden,
                "reload the page and try again",
            ),
            PageError::BadRequest(m) => ApiError::invalid(m),
            PageError::RateLimited { retry_after_secs } => ApiError {
                retry_after: Some(retry_after_secs),
                ..ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    ErrorType::RateLimited,
                    format!(
                        "too many attempts from your network; try again in {}",
                        super::wait_text(retry_after_secs)
                    ),
                )
            },
            PageError::Internal => ApiError::internal(),
        }
    }
}

/// A ceremony request: the visitor, its `X-CSRF-Token` header checked, and the
/// relying party this service is.
struct Ceremony {
    visitor: Visitor,
    rp: RelyingParty,
}

impl axum::extract::FromRequestParts<AppState> for Ceremony {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &AppState,
    ) -> Result<Self, ApiError> {
        let visitor = Visitor::from_request_parts(parts, state).await?;
        let token = parts
            .headers
            .get("x-csrf-token")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        visitor.check_csrf(state, token)?;
        let rp = state.pages.rp.clone().ok_or_else(|| {
            ApiError::invalid(
                "passkeys need the service to be reached by a host name, not an IP address",
            )
        })?;
        Ok(Ceremony { visitor, rp })
    }
}

impl Ceremony {
    /// The payer signed in on this browser, or 401.
    fn payer(&self) -> Result<&Payer, ApiError> {
        self.visitor.payer.as_ref().ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                ErrorType::Unauthorized,
                "no wallet on this browser",
            )
        })
    }

    /// The answer, with the cookies the visit set when it succeeded.
    fn answer(&self, state: &AppState, result: Result<Value, ApiError>) -> Response {
        match result {
            Ok(body) => self.visitor.finish(state, Json(body).into_response()),
            Err(e) => e.into_response(),
        }
    }
}

async fn spend(state: &AppState, bucket: Bucket, client: &ClientAddr) -> Result<(), ApiError> {
    Ok(super::spend(state, bucket, client).await?)
}

async fn register_options(
    State(state): State<AppState>,
    client: ClientAddr,
    ceremony: Ceremony,
) -> Response {
    let result = async {
        spend(&state, Bucket::Enrolments, &client).await?;
        let prompt = state
            .factors
            .passkey_options(ceremony.visitor.payer.as_ref(), &ceremony.rp)
            .await?;
        Ok(json!({"challengeId": prompt.challenge_id, "publicKey": prompt.options}))
    }
    .await;
    ceremony.answer(&state, result)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Registration {
    challenge_id: String,
    credential_id: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    attestation_object: String,
}

async fn register_finish(
    State(state): State<AppState>,
    client: ClientAddr,
    mut ceremony: Ceremony,
    body: Result<ApiJson<Registration>, ApiError>,
) -> Response {
    let result = async {
        spend(&state, Bucket::Enrolments, &client).await?;
        let ApiJson(body) = body?;
        let enrolment = state
            .factors
            .verify_passkey(
                &ceremony.rp,
                &Attestation {
                    challenge_id: &body.challenge_id,
                    credential_id: &body.credential_id,
                    client_data_json: &body.client_data_json,
                    attestation_object: &body.attestation_object,
                },
            )
            .await?;
        let payer = match &enrolment.payer_id {
            Some(id) => state
                .wallets
                .payer(id)
                .await?
                .ok_or_else(|| ApiError::invalid("unknown payer"))?,
            None => {
                spend(&state, Bucket::Wallets, &client).await?;
                state.wallets.register().await?
            }
        };
        state
            .factors
            .add_passkey(&payer.id, enrolment.credential)
            .await?;
        if ceremony.visitor.payer.is_none() {
            ceremony.visitor.sign_in(&state, payer).await?;
        }
        Ok(json!({"ok": true}))
    }
    .await;
    ceremony.answer(&state, result)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApproveStart {
    session_id: String,
}

async fn approve_options(
    State(state): State<AppState>,
    client: ClientAddr,
    ceremony: Ceremony,
    body: Result<ApiJson<ApproveStart>, ApiError>,
) -> Response {
    let result = async {
        spend(&state, Bucket::Approvals, &client).await?;
        let ApiJson(body) = body?;
        let prompt = state
            .approvals
            .passkey_options(ceremony.payer()?, &body.session_id, &ceremony.rp)
            .await?;
        Ok(json!({"challengeId": prompt.challenge_id, "publicKey": prompt.options}))
    }
    .await;
    ceremony.answer(&state, result)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Assertion {
    challenge_id: String,
    credential_id: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    authenticator_data: String,
    signature: String,
}

async fn approve_finish(
    State(state): State<AppState>,
    client: ClientAddr,
    ceremony: Ceremony,
    body: Result<ApiJson<Assertion>, ApiError>,
) -> Response {
    let result = async {
        spend(&state, Bucket::Approvals, &client).await?;
        let ApiJson(body) = body?;
        let assertion = body.into_domain();
        let approval = Approval::Passkey {
            rp: &ceremony.rp,
            assertion: &assertion,
        };
        match state.approvals.approve(ceremony.payer()?, approval).await {
            // Paid by this approval, or by another just before it.
            Ok(_) | Err(DomainError::Closed(SessionStatus::Paid)) => {
                Ok(json!({"ok": true, "status": "paid"}))
            }
            Err(e) => Err(e.into()),
        }
    }
    .await;
    ceremony.answer(&state, result)
}

/// The terms travel flattened beside the other fields (which rules out refusing
/// unknown fields, as serde cannot do both).
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantStart {
    session_id: String,
    #[serde(flatten)]
    fields: TermsFields,
    days: String,
}

/// A passkey prompt for granting the terms shown; the answer names the expiry it binds,
/// which the finish sends back.
async fn grant_options(
    State(state): State<AppState>,
    client: ClientAddr,
    ceremony: Ceremony,
    body: Result<ApiJson<GrantStart>, ApiError>,
) -> Response {
    let result = async {
        spend(&state, Bucket::Approvals, &client).await?;
        let ApiJson(body) = body?;
        let (session, _) = state.sessions.for_checkout(&body.session_id).await?;
        let expires_at = expiry_in(&state, &body.days)?;
        let terms = body.fields.terms(&session, expires_at)?;
        let prompt = state
            .approvals
            .grant_options(ceremony.payer()?, &session.id, &terms, &ceremony.rp)
            .await?;
        Ok(json!({
            "challengeId": prompt.challenge_id,
            "publicKey": prompt.options,
            "expiresAt": expires_at,
        }))
    }
    .await;
    ceremony.answer(&state, result)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GrantFinish {
    session_id: String,
    #[serde(flatten)]
    fields: TermsFields,
    expires_at: i64,
    challenge_id: String,
    credential_id: String,
    #[serde(rename = "clientDataJSON")]
    client_data_json: String,
    authenticator_data: String,
    signature: String,
}

async fn grant_finish(
    State(state): State<AppState>,
    client: ClientAddr,
    ceremony: Ceremony,
    body: Result<ApiJson<GrantFinish>, ApiError>,
) -> Response {
    let result = async {
        spend(&state, Bucket::Approvals, &client).await?;
        let ApiJson(body) = body?;
        let (session, _) = state.sessions.for_checkout(&body.session_id).await?;
        let terms = body.fields.terms(&session, body.expires_at)?;
        let assertion = Assertion {
            challenge_id: body.challenge_id,
            credential_id: body.credential_id,
            client_data_json: body.client_data_json,
            authenticator_data: body.authenticator_data,
            signature: body.signature,
        }
        .into_domain();
        let factor = Factor::Passkey {
            rp: &ceremony.rp,
            assertion: &assertion,
        };
        let mandate = state
            .approvals
            .grant(ceremony.payer()?, &session.id, &terms, factor)
            .await?;
        Ok(json!({"ok": true, "mandateId": mandate.id}))
    }
    .await;
    ceremony.answer(&state, result)
}

impl Assertion {
    fn into_domain(self) -> PasskeyAssertion {
        PasskeyAssertion {
            challenge_id: self.challenge_id,
            credential_id: self.credential_id,
            client_data_json: self.client_data_json,
            authenticator_data: self.authenticator_data,
            signature: self.signature,
        }
    }
}
