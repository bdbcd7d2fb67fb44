//! Signed receipts: proof that a payment was captured, which anyone can check against
//! the service's published keys without asking the service.
//!
//! A receipt is a compact JWS (RFC 7515) signed with Ed25519 (`alg: EdDSA`, RFC 8037)
//! whose payload is [`ReceiptClaims`]. The newest key signs; every key stays published
//! at `/.well-known/jwks.json`, so a receipt signed before a rotation still verifies.
//! A receipt names what was refunded when it was issued (`amountRefunded`, `iat`): a
//! receipt kept from before a refund still verifies, and a later one tells the refund.

use super::clock::rfc3339;
use super::ports::Store;
use super::sessions::SessionRecord;
use super::{ids, Clock, DomainError};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signer, SigningKey};
use rand::RngCore;
use serde_json::json;
use std::sync::Arc;
use walleot_api::{Jwk, Jwks, Receipt, ReceiptClaims, SessionStatus};

/// A key that signs receipts. `seed` is the Ed25519 private key: never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    pub kid: String,
    pub seed: [u8; 32],
    pub created_at: i64,
}

impl std::fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl SigningKeyRecord {
    /// The key as JWKS publishes it.
    pub fn jwk(&self) -> Jwk {
        let public = SigningKey::from_bytes(&self.seed).verifying_key();
        Jwk {
            kty: "OKP".into(),
            crv: "Ed25519".into(),
            x: URL_SAFE_NO_PAD.encode(public.as_bytes()),
            kid: self.kid.clone(),
            alg: "EdDSA".into(),
            use_: "sig".into(),
        }
    }

    /// `claims` as a compact JWS signed with this key.
    pub fn sign(&self, claims: &ReceiptClaims) -> String {
        let header = json!({"alg": "EdDSA", "typ": "JWT", "kid": self.kid});
        let signed = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialize"))
        );
        let signature = SigningKey::from_bytes(&self.seed).sign(signed.as_bytes());
        format!("{signed}.{}", URL_SAFE_NO_PAD.encode(signature.to_bytes()))
    }
}

#[derive(Clone)]
pub struct Receipts {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// The service's public address, named in every receipt as its issuer.
    issuer: Arc<str>,
}

impl Receipts {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, issuer: &str) -> Self {
        Receipts {
            store,
            clock,
            issuer: issuer.into(),
        }
    }

    /// Adds a new signing key: receipts are signed with it from now on, on every
    /// instance sharing the database; the older keys stay published.
    pub async fn rotate(&self) -> Result<SigningKeyRecord, DomainError> {
        let mut seed = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut seed);
        let key = SigningKeyRecord {
            kid: ids::new_id("rk"),
            seed,
            created_at: self.clock.now_ms(),
        };
        self.store.insert_signing_key(&key).await?;
        Ok(key)
    }

    /// Every key, newest (the one that signs) first; the first one is made on first
    /// use. Racing first uses may each add one: all are published, the newest signs.
    async fn keys(&self) -> Result<Vec<SigningKeyRecord>, DomainError> {
        let keys = self.store.signing_keys().await?;
        if keys.is_empty() {
            return Ok(vec![self.rotate().await?]);
        }
        Ok(keys)
    }

    /// Every published key, newest first.
    pub async fn jwks(&self) -> Result<Jwks, DomainError> {
        Ok(Jwks {
            keys: self
                .keys()
                .await?
                .iter()
                .map(SigningKeyRecord::jwk)
                .collect(),
        })
    }

    /// The receipt of `session` (read as of now), whose payment must be captured.
    pub async fn receipt(&self, session: &SessionRecord) -> Result<Receipt, DomainError> {
        let claims = self.claims(session).await?;
        let key = self.keys().await?.swap_remove(0);
        Ok(Receipt {
            session_id: session.id.clone(),
            receipt: key.sign(&claims),
            key_id: key.kid,
        })
    }

    /// What the receipt of `session` attests; refused while nothing was captured.
    async fn claims(&self, session: &SessionRecord) -> Result<ReceiptClaims, DomainError> {
        let captured = session
            .amount_captured
            .filter(|_| session.status == SessionStatus::Paid)
            .ok_or_else(|| {
                DomainError::Conflict(format!(
                    "the session is {}{}; a receipt is made once its payment is captured",
                    session.status,
                    match session.capture_status {
                        Some(walleot_api::CaptureStatus::Held) => " with its funds held",
                        _ => "",
                    }
                ))
            })?;
        // The money moved with the payment (automatic capture) or the capture.
        let captured_at = self
            .store
            .session_events(&session.id)
            .await?
            .iter()
            .rev()
            .find(|e| e.kind == "session.captured" || e.kind == "session.paid")
            .map(|e| e.created_at)
            .unwrap_or(session.updated_at);
        Ok(ReceiptClaims {
            iss: self.issuer.to_string(),
            session_id: session.id.clone(),
            merchant_id: session.merchant_id.clone(),
            amount_captured: captured,
            currency: session.currency,
            livemode: session.livemode,
            metadata: session.metadata.clone(),
            captured_at: rfc3339(captured_at),
            amount_refunded: session.amount_refunded,
            iat: self.clock.now_ms() / 1000,
        })
    }
}
