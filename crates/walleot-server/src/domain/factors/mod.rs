//! Second factors of payers: passkeys (WebAuthn) and, where passkeys are unavailable,
//! TOTP codes from an authenticator app; their enrolment, and the browser logins that
//! a first factor starts.

pub mod totp;
pub mod webauthn;

use super::approvals::CEREMONY_MS;
use super::payers::{Challenge, ChallengePurpose, Passkey, Payer, TotpRecord};
use super::ports::Store;
use super::{ids, Clock, DomainError};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::sync::Arc;
use webauthn::{NewCredential, RelyingParty};

/// How long a payer stays signed in on a browser.
pub const LOGIN_MS: i64 = 30 * super::clock::DAY_MS;

/// Which second factors a payer has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FactorSummary {
    pub passkeys: usize,
    /// A confirmed authenticator app.
    pub totp: bool,
}

/// A passkey prompt for a new credential.
pub struct RegistrationPrompt {
    pub challenge_id: String,
    /// The `publicKey` options of `navigator.credentials.create`.
    pub options: Value,
}

/// A checked new passkey, for the payer its prompt was made for (`None`: a new wallet).
pub struct PasskeyEnrolment {
    pub payer_id: Option<String>,
    pub credential: NewCredential,
}

/// The browser's answer to a registration prompt, binary fields in base64url.
pub struct Attestation<'a> {
    pub challenge_id: &'a str,
    pub credential_id: &'a str,
    pub client_data_json: &'a str,
    pub attestation_object: &'a str,
}

#[derive(Clone)]
pub struct Factors {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

impl Factors {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Factors { store, clock }
    }

    pub async fn summary(&self, payer_id: &str) -> Result<FactorSummary, DomainError> {
        let passkeys = self.store.passkeys_of(payer_id).await?.len();
        let totp = self
            .store
            .totp_of(payer_id)
            .await?
            .is_some_and(|t| t.confirmed);
        Ok(FactorSummary { passkeys, totp })
    }

    /// A registration prompt, for the signed-in payer or for a wallet yet to be made.
    pub async fn passkey_options(
        &self,
        payer: Option<&Payer>,
        rp: &RelyingParty,
    ) -> Result<RegistrationPrompt, DomainError> {
        let challenge = Challenge {
            id: ids::new_id("chal"),
            purpose: ChallengePurpose::Register,
            payer_id: payer.map(|p| p.id.clone()),
            session_id: None,
            challenge: webauthn::random_bytes(32),
            nonce: Vec::new(),
            expires_at: self.clock.now_ms() + CEREMONY_MS,
        };
        self.store.insert_challenge(&challenge).await?;
        let options =
            webauthn::registration_options(rp, &challenge.challenge, &webauthn::random_bytes(16));
        Ok(RegistrationPrompt {
            challenge_id: challenge.id,
            options,
        })
    }

    /// Checks the answer to a registration prompt; nothing is stored yet.
    pub async fn verify_passkey(
        &self,
        rp: &RelyingParty,
        answer: &Attestation<'_>,
    ) -> Result<PasskeyEnrolment, DomainError> {
        let challenge = self
            .store
            .take_challenge(answer.challenge_id, self.clock.now_ms())
            .await?
            .filter(|c| c.purpose == ChallengePurpose::Register)
            .ok_or_else(|| {
                DomainError::Expired("this passkey prompt has expired; try again".into())
            })?;
        let decode = |field: &'static str, text: &str| {
            webauthn::decode(text).map_err(|e| DomainError::invalid(field, e.to_string()))
        };
        let credential = webauthn::verify_registration(
            rp,
            &challenge.challenge,
            &decode("clientDataJSON", answer.client_data_json)?,
            &decode("attestationObject", answer.attestation_object)?,
        )
        .map_err(|e| DomainError::invalid("attestationObject", e.to_string()))?;
        if webauthn::decode(answer.credential_id).ok().as_deref()
            != Some(credential.credential_id.as_slice())
        {
            return Err(DomainError::invalid(
                "credentialId",
                "does not match the attestation",
            ));
        }
        Ok(PasskeyEnrolment {
            payer_id: challenge.payer_id,
            credential,
        })
    }

    pub async fn add_passkey(
        &self,
        payer_id: &str,
        credential: NewCredential,
    ) -> Result<(), DomainError> {
        Ok(self
            .store
            .insert_passkey(&Passkey {
                credential_id: credential.credential_id,
                payer_id: payer_id.to_string(),
                public_key: credential.public_key,
                sign_count: i64::from(credential.sign_count),
                created_at: self.clock.now_ms(),
            })
            .await?)
    }

    /// The time step of `code` under an app secret being enrolled, if it is current.
    pub fn check_new_code(&self, secret: &[u8], code: &str) -> Option<i64> {
        totp::matching_step(secret, code, self.clock.now_ms())
    }

    /// Keeps a confirmed authenticator app; `step` is the code that confirmed it, so
    /// that it cannot approve a payment as well.
    pub async fn add_totp(
        &self,
        payer_id: &str,
        secret: Vec<u8>,
        step: i64,
    ) -> Result<(), DomainError> {
        Ok(self
            .store
            .put_totp(&TotpRecord {
                payer_id: payer_id.to_string(),
                secret,
                confirmed: true,
                last_step: step,
                created_at: self.clock.now_ms(),
            })
            .await?)
    }

    /// The payer signed in with this browser's login token, if it is current.
    pub async fn signed_in(&self, token: &str) -> Result<Option<Payer>, DomainError> {
        let now = self.clock.now_ms();
        match self.store.find_login(&token_hash(token), now).await? {
            Some(id) => Ok(self.store.get_payer(&id).await?),
            None => Ok(None),
        }
    }

    /// Starts a login for the payer; returns its token, which only the browser keeps.
    pub async fn sign_in(&self, payer_id: &str) -> Result<String, DomainError> {
        let token = webauthn::encode(&webauthn::random_bytes(32));
        let now = self.clock.now_ms();
        self.store
            .insert_login(&token_hash(&token), payer_id, now, now + LOGIN_MS)
            .await?;
        Ok(token)
    }

    pub async fn sign_out(&self, token: &str) -> Result<(), DomainError> {
        Ok(self.store.delete_login(&token_hash(token)).await?)
    }
}

fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}
