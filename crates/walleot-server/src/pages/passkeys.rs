//! `/webauthn/…`: the JSON halves of the passkey ceremonies. The browser asks for
//! options, runs the ceremony, and sends the result back; errors answer in the API's
//! error shape.

use super::{ClientAddr, PageError, Visitor};
use crate::app::AppState;
use crate::domain::factors::webauthn::{self, RelyingParty};
use crate::domain::payers::{ApprovalMethod, Challenge, ChallengePurpose, Passkey};
use crate::domain::wallets::{CheckoutStep, PayError};
use crate::http::error::ApiError;
use crate::http::extract::ApiJson;
use crate::ratelimit::Bucket;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use walleot_api::{ErrorType, SessionStatus};

/// How long a ceremony may take.
const CHALLENGE_MS: i64 = 5 * 60 * 1000;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/webauthn/register/options", post(register_options))
        .route("/webauthn/register/finish", post(register_finish))
        .route("/webauthn/approve/options", post(approve_options))
        .route("/webauthn/approve/finish", post(approve_finish))
}

fn refused(status: StatusCode, kind: ErrorType, message: &str) -> ApiError {
    ApiError::new(status, kind, message)
}

impl From<super::PageError> for ApiError {
    fn from(e: super::PageError) -> Self {
        match e {
            super::PageError::NotFound => ApiError::not_found("no such payment"),
            super::PageError::Forbidden => refused(
                StatusCode::FORBIDDEN,
                ErrorType::Forbidden,
                "reload the page and try again",
            ),
            super::PageError::BadRequest(m) => ApiError::invalid(m),
            super::PageError::RateLimited { retry_after_secs } => refused(
                StatusCode::TOO_MANY_REQUESTS,
                ErrorType::RateLimited,
                &format!(
                    "too many attempts from your network; try again in {}",
                    super::wait_text(retry_after_secs)
                ),
            ),
            super::PageError::Internal => ApiError::internal(),
        }
    }
}

/// The visitor, after checking the CSRF header, and the relying party.
async fn start(state: &AppState, headers: &HeaderMap) -> Result<(Visitor, RelyingParty), ApiError> {
    let visitor = Visitor::from_headers(state, headers).await?;
    let token = headers
        .get("x-csrf-token")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    visitor.check_csrf(state, headers, token)?;
    let rp = state.pages.rp.clone().ok_or_else(|| {
        ApiError::invalid(
            "passkeys need the service to be reached by a host name, not an IP address",
        )
    })?;
    Ok((visitor, rp))
}

/// The payer signed in on this browser, or 401.
fn signed_in(visitor: &Visitor) -> Result<crate::domain::payers::Payer, ApiError> {
    visitor.payer.clone().ok_or_else(|| {
        refused(
            StatusCode::UNAUTHORIZED,
            ErrorType::Unauthorized,
            "no wallet on this browser",
        )
    })
}

/// Spends one request from a page budget; when it is spent, notes the wait for the
/// answer's `Retry-After`.
fn spend(
    state: &AppState,
    bucket: Bucket,
    client: &ClientAddr,
    retry_after: &mut Option<u64>,
) -> Result<(), ApiError> {
    super::spend(state, bucket, client).map_err(|e| {
        if let PageError::RateLimited { retry_after_secs } = e {
            *retry_after = Some(retry_after_secs);
        }
        ApiError::from(e)
    })
}

fn answer(
    visitor: &Visitor,
    state: &AppState,
    result: Result<serde_json::Value, ApiError>,
    retry_after: Option<u64>,
) -> Response {
    match result {
        Ok(body) => visitor.finish(state, Json(body).into_response()),
        Err(e) => {
            let mut response = e.into_response();
            if let Some(secs) = retry_after {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, secs.into());
            }
            response
        }
    }
}

async fn register_options(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
) -> Response {
    let (visitor, rp) = match start(&state, &headers).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut retry_after = None;
    let challenge = Challenge {
        id: crate::domain::ids::new_id("chal"),
        purpose: ChallengePurpose::Register,
        payer_id: visitor.payer.as_ref().map(|p| p.id.clone()),
        session_id: None,
        challenge: webauthn::random_bytes(32),
        nonce: Vec::new(),
        expires_at: state.clock.now_ms() + CHALLENGE_MS,
    };
    let result = async {
        spend(&state, Bucket::Enrolments, &client, &mut retry_after)?;
        state.store.insert_challenge(&challenge).await?;
        let options =
            webauthn::registration_options(&rp, &challenge.challenge, &webauthn::random_bytes(16));
        Ok::<_, ApiError>(json!({"challengeId": challenge.id, "publicKey": options}))
    }
    .await;
    answer(&visitor, &state, result, retry_after)
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
    headers: HeaderMap,
    body: Result<ApiJson<Registration>, ApiError>,
) -> Response {
    let (mut visitor, rp) = match start(&state, &headers).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut retry_after = None;
    let result = async {
        spend(&state, Bucket::Enrolments, &client, &mut retry_after)?;
        let ApiJson(body) = body?;
        let now = state.clock.now_ms();
        let challenge = state
            .store
            .take_challenge(&body.challenge_id, now)
            .await?
            .filter(|c| c.purpose == ChallengePurpose::Register)
            .ok_or_else(|| ApiError::invalid("this passkey prompt has expired; try again"))?;
        let credential = webauthn::verify_registration(
            &rp,
            &challenge.challenge,
            &webauthn::decode(&body.client_data_json)
                .map_err(|e| ApiError::invalid(e.to_string()))?,
            &webauthn::decode(&body.attestation_object)
                .map_err(|e| ApiError::invalid(e.to_string()))?,
        )
        .map_err(|e| ApiError::invalid(e.to_string()))?;
        if webauthn::decode(&body.credential_id).ok().as_deref()
            != Some(credential.credential_id.as_slice())
        {
            return Err(ApiError::invalid(
                "the credential id does not match the attestation",
            ));
        }
        let payer = match challenge.payer_id {
            Some(id) => state
                .wallets
                .payer(&id)
                .await?
                .ok_or_else(|| ApiError::invalid("unknown payer"))?,
            None => {
                spend(&state, Bucket::Wallets, &client, &mut retry_after)?;
                state.wallets.register().await?
            }
        };
        state
            .store
            .insert_passkey(&Passkey {
                credential_id: credential.credential_id,
                payer_id: payer.id.clone(),
                public_key: credential.public_key,
                sign_count: i64::from(credential.sign_count),
                created_at: now,
            })
            .await?;
        if visitor.payer.is_none() {
            visitor.sign_in(&state, payer).await?;
        }
        Ok(json!({"ok": true}))
    }
    .await;
    answer(&visitor, &state, result, retry_after)
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ApproveStart {
    session_id: String,
}

async fn approve_options(
    State(state): State<AppState>,
    client: ClientAddr,
    headers: HeaderMap,
    body: Result<ApiJson<ApproveStart>, ApiError>,
) -> Response {
    let (visitor, rp) = match start(&state, &headers).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut retry_after = None;
    let result = async {
        spend(&state, Bucket::Approvals, &client, &mut retry_after)?;
        let ApiJson(body) = body?;
        let payer = signed_in(&visitor)?;
        let (session, _) = state.sessions.for_checkout(&body.session_id).await?;
        match state.wallets.step(&payer, &session).await? {
            CheckoutStep::NeedsApproval | CheckoutStep::AutoApprove => {}
            CheckoutStep::Locked { .. } => {
                return Err(refused(
                    StatusCode::CONFLICT,
                    ErrorType::Conflict,
                    "approval is locked after failed attempts",
                ))
            }
            CheckoutStep::InsufficientFunds { .. } => {
                return Err(refused(
                    StatusCode::PAYMENT_REQUIRED,
                    ErrorType::PaymentRequired,
                    "insufficient funds",
                ))
            }
            CheckoutStep::Closed(status) => {
                return Err(refused(
                    StatusCode::CONFLICT,
                    ErrorType::Conflict,
                    &format!("the payment is {status}"),
                ))
            }
        }
        let credentials: Vec<Vec<u8>> = state
            .store
            .passkeys_of(&payer.id)
            .await?
            .into_iter()
            .map(|p| p.credential_id)
            .collect();
        if credentials.is_empty() {
            return Err(ApiError::invalid("this wallet has no passkey"));
        }
        let nonce = webauthn::random_bytes(16);
        let challenge = Challenge {
            id: crate::domain::ids::new_id("chal"),
            purpose: ChallengePurpose::Approve,
            payer_id: Some(payer.id.clone()),
            session_id: Some(session.id.clone()),
            challenge: webauthn::approval_challenge(
                &session.id,
                session.amount,
                session.currency.code(),
                &session.merchant_id,
                &nonce,
            ),
            nonce,
            expires_at: state.clock.now_ms() + CHALLENGE_MS,
        };
        state.store.insert_challenge(&challenge).await?;
        Ok(json!({
            "challengeId": challenge.id,
            "publicKey": webauthn::assertion_options(&rp, &challenge.challenge, &credentials),
        }))
    }
    .await;
    answer(&visitor, &state, result, retry_after)
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
    headers: HeaderMap,
    body: Result<ApiJson<Assertion>, ApiError>,
) -> Response {
    let (visitor, rp) = match start(&state, &headers).await {
        Ok(v) => v,
        Err(e) => return e.into_response(),
    };
    let mut retry_after = None;
    let result = async {
        spend(&state, Bucket::Approvals, &client, &mut retry_after)?;
        let ApiJson(body) = body?;
        let payer = signed_in(&visitor)?;
        let now = state.clock.now_ms();
        let challenge = state
            .store
            .take_challenge(&body.challenge_id, now)
            .await?
            .filter(|c| {
                c.purpose == ChallengePurpose::Approve
                    && c.payer_id.as_deref() == Some(payer.id.as_str())
            })
            .ok_or_else(|| ApiError::invalid("this approval prompt has expired; try again"))?;
        let session_id = challenge.session_id.clone().unwrap_or_default();
        let (session, _) = state.sessions.for_checkout(&session_id).await?;
        // The charge as it stands now must be the one the challenge was made for.
        let expected = webauthn::approval_challenge(
            &session.id,
            session.amount,
            session.currency.code(),
            &session.merchant_id,
            &challenge.nonce,
        );
        if expected != challenge.challenge {
            return Err(ApiError::invalid("the payment changed; try again"));
        }
        if payer.locked_until > now {
            return Err(refused(
                StatusCode::CONFLICT,
                ErrorType::Conflict,
                "approval is locked after failed attempts",
            ));
        }
        let decode = |s: &str| webauthn::decode(s).map_err(|e| ApiError::invalid(e.to_string()));
        let credential_id = decode(&body.credential_id)?;
        let client_data = decode(&body.client_data_json)?;
        let authenticator_data = decode(&body.authenticator_data)?;
        let signature = decode(&body.signature)?;
        let passkey = state
            .store
            .find_passkey(&credential_id)
            .await?
            .filter(|p| p.payer_id == payer.id);
        let verified = passkey.as_ref().map(|p| {
            webauthn::verify_assertion(
                &rp,
                &expected,
                &webauthn::StoredPasskey {
                    credential_id: &p.credential_id,
                    public_key: &p.public_key,
                    sign_count: u32::try_from(p.sign_count).unwrap_or(u32::MAX),
                },
                &client_data,
                &authenticator_data,
                &signature,
            )
        });
        let verified = match verified {
            Some(Ok(v))
                if state
                    .store
                    .advance_sign_count(&credential_id, i64::from(v.sign_count))
                    .await? =>
            {
                v
            }
            _ => {
                let payer = state.wallets.note_failed_attempt(&payer.id).await?;
                let locked = payer.locked_until > now;
                return Err(refused(
                    StatusCode::BAD_REQUEST,
                    ErrorType::InvalidRequest,
                    if locked {
                        "the passkey did not verify; approval is now locked for a while"
                    } else {
                        "the passkey did not verify"
                    },
                ));
            }
        };
        state.wallets.clear_failed_attempts(&payer.id).await?;
        let evidence = json!({
            "factor": "passkey",
            "credentialId": body.credential_id,
            "clientDataJSON": body.client_data_json,
            "authenticatorData": body.authenticator_data,
            "signature": body.signature,
            "nonce": webauthn::encode(&challenge.nonce),
            "userVerified": verified.user_verified,
        })
        .to_string();
        match state
            .wallets
            .pay(
                &session.id,
                &payer.id,
                ApprovalMethod::Passkey,
                Some(evidence),
            )
            .await
        {
            Ok(_) => Ok(json!({"ok": true, "status": "paid"})),
            Err(PayError::InsufficientFunds { .. }) => Err(refused(
                StatusCode::PAYMENT_REQUIRED,
                ErrorType::PaymentRequired,
                "insufficient funds",
            )),
            Err(PayError::Closed(SessionStatus::Paid)) => Ok(json!({"ok": true, "status": "paid"})),
            Err(PayError::Closed(status)) => Err(refused(
                StatusCode::CONFLICT,
                ErrorType::Conflict,
                &format!("the payment is {status}"),
            )),
            Err(PayError::NotFound) => Err(ApiError::not_found("no such payment")),
            Err(PayError::Store(e)) => Err(e.into()),
        }
    }
    .await;
    answer(&visitor, &state, result, retry_after)
}
