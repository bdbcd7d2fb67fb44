//! Approving a payment with a second factor: one use case for passkeys and
//! authenticator-app codes alike. A payer whose approvals are locked is refused before
//! any factor is checked; a factor that does not verify counts towards the lock; one
//! that verifies is kept as the approval's evidence, and the payment is made.

use super::factors::totp;
use super::factors::webauthn::{self, RelyingParty};
use super::mandates::{Grant, MandateRecord, MandateTerms, Mandates};
use super::payers::{ApprovalMethod, Challenge, ChallengePurpose, Payer};
use super::ports::Store;
use super::sessions::{SessionRecord, Sessions};
use super::wallets::{CheckoutStep, Wallets};
use super::{ids, Clock, DomainError};
use serde_json::{json, Value};
use std::sync::Arc;

/// How long a passkey ceremony may take.
pub const CEREMONY_MS: i64 = 5 * 60 * 1000;

/// A passkey's answer to `navigator.credentials.get`, its binary fields in base64url as
/// the browser sent them: so they are kept as the approval's evidence.
#[derive(Debug, Clone)]
pub struct PasskeyAssertion {
    pub challenge_id: String,
    pub credential_id: String,
    pub client_data_json: String,
    pub authenticator_data: String,
    pub signature: String,
}

/// What the payer approves with, and so which payment: a passkey's challenge was made
/// for one session ([`Approvals::passkey_options`]); an app code names its session.
pub enum Approval<'a> {
    Passkey {
        rp: &'a RelyingParty,
        assertion: &'a PasskeyAssertion,
    },
    Totp {
        session_id: &'a str,
        code: &'a str,
    },
}

/// A second factor the payer presents for something other than a payment.
pub enum Factor<'a> {
    Passkey {
        rp: &'a RelyingParty,
        assertion: &'a PasskeyAssertion,
    },
    Totp {
        code: &'a str,
    },
}

/// A passkey prompt for one payment.
pub struct PasskeyPrompt {
    pub challenge_id: String,
    /// The `publicKey` options of `navigator.credentials.get`.
    pub options: Value,
}

#[derive(Clone)]
pub struct Approvals {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    sessions: Sessions,
    wallets: Wallets,
    mandates: Mandates,
}

impl Approvals {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sessions: Sessions,
        wallets: Wallets,
        mandates: Mandates,
    ) -> Self {
        Approvals {
            store,
            clock,
            sessions,
            wallets,
            mandates,
        }
    }

    /// A passkey challenge bound to the session's id, amount, currency and merchant, so
    /// that its assertion approves this charge and no other.
    pub async fn passkey_options(
        &self,
        payer: &Payer,
        session_id: &str,
        rp: &RelyingParty,
    ) -> Result<PasskeyPrompt, DomainError> {
        let (session, _) = self.sessions.for_checkout(session_id).await?;
        match self.wallets.step(payer, &session).await? {
            CheckoutStep::NeedsApproval | CheckoutStep::AutoApprove => {}
            CheckoutStep::Locked { until } => return Err(DomainError::Locked { until }),
            CheckoutStep::InsufficientFunds { available } => {
                return Err(DomainError::InsufficientFunds { available })
            }
            CheckoutStep::Closed(status) => return Err(DomainError::Closed(status)),
        }
        let credentials = self.credentials(payer).await?;
        let nonce = webauthn::random_bytes(16);
        let challenge = Challenge {
            id: ids::new_id("chal"),
            purpose: ChallengePurpose::Approve,
            payer_id: Some(payer.id.clone()),
            session_id: Some(session.id.clone()),
            challenge: charge_challenge(&session, &nonce),
            nonce,
            expires_at: self.clock.now_ms() + CEREMONY_MS,
        };
        self.store.insert_challenge(&challenge).await?;
        Ok(PasskeyPrompt {
            options: webauthn::assertion_options(rp, &challenge.challenge, &credentials),
            challenge_id: challenge.id,
        })
    }

    /// Checks the factor and pays the session with it. Refusals: `Locked` before any
    /// check, `FactorRejected` (counted towards the lock), `Expired` for a passkey
    /// prompt that no longer holds, and the payment's own (`Closed`,
    /// `InsufficientFunds`).
    pub async fn approve(
        &self,
        payer: &Payer,
        approval: Approval<'_>,
    ) -> Result<SessionRecord, DomainError> {
        let now = self.clock.now_ms();
        let (session, method, evidence) = match approval {
            Approval::Totp { session_id, code } => {
                let (session, _) = self.sessions.for_checkout(session_id).await?;
                unlocked(payer, now)?;
                let evidence = self.check_code(payer, code, now).await?;
                (session, ApprovalMethod::Totp, evidence)
            }
            Approval::Passkey { rp, assertion } => {
                let (session, challenge) =
                    self.open_challenge(payer, &assertion.challenge_id).await?;
                unlocked(payer, now)?;
                let evidence = self.check_passkey(payer, rp, &challenge, assertion).await?;
                (session, ApprovalMethod::Passkey, evidence)
            }
        };
        let evidence = self.counted(payer, method, evidence, now).await?;
        self.wallets
            .pay(&session, &payer.id, method, Some(evidence))
            .await
    }

    /// The evidence of a factor that verified, which clears the failure count; a factor
    /// that did not counts towards the lock.
    async fn counted(
        &self,
        payer: &Payer,
        method: ApprovalMethod,
        evidence: Option<String>,
        now: i64,
    ) -> Result<String, DomainError> {
        let Some(evidence) = evidence else {
            let payer = self.wallets.note_failed_attempt(&payer.id).await?;
            return Err(DomainError::FactorRejected {
                factor: method,
                locked: payer.is_locked(now),
            });
        };
        self.wallets.clear_failed_attempts(&payer.id).await?;
        Ok(evidence)
    }

    /// The session a payer may grant a mandate from: one that names a customer and that
    /// this payer paid.
    async fn grantable(
        &self,
        payer: &Payer,
        session_id: &str,
    ) -> Result<SessionRecord, DomainError> {
        let (session, _) = self.sessions.for_checkout(session_id).await?;
        self.mandates.grantable(&payer.id, &session).await?;
        Ok(session)
    }

    /// A passkey challenge bound to the session and the very terms to grant.
    pub async fn grant_options(
        &self,
        payer: &Payer,
        session_id: &str,
        terms: &MandateTerms,
        rp: &RelyingParty,
    ) -> Result<PasskeyPrompt, DomainError> {
        let session = self.grantable(payer, session_id).await?;
        unlocked(payer, self.clock.now_ms())?;
        let credentials = self.credentials(payer).await?;
        let nonce = webauthn::random_bytes(16);
        let challenge = Challenge {
            id: ids::new_id("chal"),
            purpose: ChallengePurpose::Grant,
            payer_id: Some(payer.id.clone()),
            session_id: Some(session.id.clone()),
            challenge: grant_challenge(&session, terms, &nonce),
            nonce,
            expires_at: self.clock.now_ms() + CEREMONY_MS,
        };
        self.store.insert_challenge(&challenge).await?;
        Ok(PasskeyPrompt {
            options: webauthn::assertion_options(rp, &challenge.challenge, &credentials),
            challenge_id: challenge.id,
        })
    }

    /// Grants the merchant of a paid session a mandate for its customer, on the payer's
    /// second factor: always asked, even where the payment itself needed none. A passkey
    /// assertion counts only for the terms its challenge was made for.
    pub async fn grant(
        &self,
        payer: &Payer,
        session_id: &str,
        terms: &MandateTerms,
        factor: Factor<'_>,
    ) -> Result<MandateRecord, DomainError> {
        let now = self.clock.now_ms();
        let session = self.grantable(payer, session_id).await?;
        let (method, evidence) = match factor {
            Factor::Totp { code } => {
                unlocked(payer, now)?;
                (
                    ApprovalMethod::Totp,
                    self.check_code(payer, code, now).await?,
                )
            }
            Factor::Passkey { rp, assertion } => {
                let challenge = self
                    .take_challenge(payer, &assertion.challenge_id, ChallengePurpose::Grant)
                    .await?;
                if challenge.session_id.as_deref() != Some(session.id.as_str())
                    || grant_challenge(&session, terms, &challenge.nonce) != challenge.challenge
                {
                    return Err(DomainError::Expired(
                        "the terms changed since the prompt; try again".into(),
                    ));
                }
                unlocked(payer, now)?;
                let evidence = self.check_passkey(payer, rp, &challenge, assertion).await?;
                (ApprovalMethod::Passkey, evidence)
            }
        };
        self.counted(payer, method, evidence, now).await?;
        self.mandates
            .grant(Grant {
                payer_id: payer.id.clone(),
                session_id: session.id,
                limits: terms.limits,
                expires_at: Some(terms.expires_at),
            })
            .await
    }

    async fn credentials(&self, payer: &Payer) -> Result<Vec<Vec<u8>>, DomainError> {
        let credentials: Vec<Vec<u8>> = self
            .store
            .passkeys_of(&payer.id)
            .await?
            .into_iter()
            .map(|p| p.credential_id)
            .collect();
        if credentials.is_empty() {
            return Err(DomainError::Conflict("this wallet has no passkey".into()));
        }
        Ok(credentials)
    }

    /// The payer's unused challenge of this purpose.
    async fn take_challenge(
        &self,
        payer: &Payer,
        challenge_id: &str,
        purpose: ChallengePurpose,
    ) -> Result<Challenge, DomainError> {
        self.store
            .take_challenge(challenge_id, self.clock.now_ms())
            .await?
            .filter(|c| c.purpose == purpose && c.payer_id.as_deref() == Some(payer.id.as_str()))
            .ok_or_else(|| DomainError::Expired("this prompt has expired; try again".into()))
    }

    /// The evidence of an app code, or `None` when it is wrong or was used already.
    async fn check_code(
        &self,
        payer: &Payer,
        code: &str,
        now: i64,
    ) -> Result<Option<String>, DomainError> {
        let record = self.store.totp_of(&payer.id).await?.filter(|t| t.confirmed);
        let Some(step) = record.and_then(|t| totp::matching_step(&t.secret, code, now)) else {
            return Ok(None);
        };
        let accepted = self.store.use_totp_step(&payer.id, step, true).await?;
        Ok(accepted.then(|| json!({"factor": "totp", "step": step}).to_string()))
    }

    /// The payer's unused approval challenge, and its session if the charge still is
    /// the one the challenge was made for.
    async fn open_challenge(
        &self,
        payer: &Payer,
        challenge_id: &str,
    ) -> Result<(SessionRecord, Challenge), DomainError> {
        let challenge = self
            .take_challenge(payer, challenge_id, ChallengePurpose::Approve)
            .await?;
        let session_id = challenge.session_id.as_deref().unwrap_or_default();
        let (session, _) = self.sessions.for_checkout(session_id).await?;
        if charge_challenge(&session, &challenge.nonce) != challenge.challenge {
            return Err(DomainError::Expired(
                "the payment changed; try again".into(),
            ));
        }
        Ok((session, challenge))
    }

    /// The evidence of a passkey assertion, or `None` when it does not verify, is not
    /// the payer's, or its signature counter went back. Undecodable fields are refused
    /// without counting as a failure.
    async fn check_passkey(
        &self,
        payer: &Payer,
        rp: &RelyingParty,
        challenge: &Challenge,
        assertion: &PasskeyAssertion,
    ) -> Result<Option<String>, DomainError> {
        let decode = |field: &'static str, text: &str| {
            webauthn::decode(text).map_err(|e| DomainError::invalid(field, e.to_string()))
        };
        let credential_id = decode("credentialId", &assertion.credential_id)?;
        let client_data = decode("clientDataJSON", &assertion.client_data_json)?;
        let authenticator_data = decode("authenticatorData", &assertion.authenticator_data)?;
        let signature = decode("signature", &assertion.signature)?;
        let Some(passkey) = self
            .store
            .find_passkey(&credential_id)
            .await?
            .filter(|p| p.payer_id == payer.id)
        else {
            return Ok(None);
        };
        let stored = webauthn::StoredPasskey {
            credential_id: &passkey.credential_id,
            public_key: &passkey.public_key,
            sign_count: u32::try_from(passkey.sign_count).unwrap_or(u32::MAX),
        };
        let Ok(verified) = webauthn::verify_assertion(
            rp,
            &challenge.challenge,
            &stored,
            &client_data,
            &authenticator_data,
            &signature,
        ) else {
            return Ok(None);
        };
        if !self
            .store
            .advance_sign_count(&credential_id, i64::from(verified.sign_count))
            .await?
        {
            return Ok(None);
        }
        Ok(Some(
            json!({
                "factor": "passkey",
                "credentialId": assertion.credential_id,
                "clientDataJSON": assertion.client_data_json,
                "authenticatorData": assertion.authenticator_data,
                "signature": assertion.signature,
                "nonce": webauthn::encode(&challenge.nonce),
                "userVerified": verified.user_verified,
            })
            .to_string(),
        ))
    }
}

fn unlocked(payer: &Payer, now: i64) -> Result<(), DomainError> {
    if payer.is_locked(now) {
        Err(DomainError::Locked {
            until: payer.locked_until,
        })
    } else {
        Ok(())
    }
}

/// The challenge of a grant: the session's charge and the terms, so that an assertion
/// grants exactly what the payer was shown.
fn grant_challenge(session: &SessionRecord, terms: &MandateTerms, nonce: &[u8]) -> Vec<u8> {
    let limits = &terms.limits;
    let described = format!(
        "grant-v1|per_call={:?}|period={:?}|total={:?}|expires={}",
        limits.per_call,
        limits.period.map(|(p, max)| (p.as_str(), max)),
        limits.total,
        terms.expires_at
    );
    let mut bound = nonce.to_vec();
    bound.extend_from_slice(described.as_bytes());
    charge_challenge(session, &bound)
}

fn charge_challenge(session: &SessionRecord, nonce: &[u8]) -> Vec<u8> {
    webauthn::approval_challenge(
        &session.id,
        session.amount,
        session.currency.code(),
        &session.merchant_id,
        nonce,
    )
}
