//! WebAuthn for passkeys: the options a browser needs, and the checks of what it answers.
//!
//! The checks are those of `webauthn-rs-core`, the relying-party engine of the
//! webauthn-rs project (pure Rust). Registration checks the ceremony type, challenge,
//! origin, relying-party hash, user presence, the algorithm against those offered, and
//! any attestation the browser sends (the service asks for "none": it needs a key, not
//! the authenticator's make). Assertions are checked in full: type, challenge, origin,
//! relying-party hash, user presence, user verification when the passkey did it at
//! registration, the signature over the authenticator data and the client data hash,
//! and the signature counter against the one stored.
//!
//! Passkeys may use ES256 (ECDSA P-256, what most authenticators make), EdDSA (Ed25519,
//! as some security keys make them) or RS256 (RSA PKCS#1 v1.5 with SHA-256, as Windows
//! Hello makes them). The crate runs every check for all three but cannot verify with
//! an Ed25519 key: [`ed25519`] takes over at that one step.
//!
//! The challenge of an approval is derived from the charge (session, amount, currency,
//! merchant) and a nonce, so the stored assertion proves which charge it approved. The
//! crate draws its own random challenges; the ceremony state it makes is given ours
//! instead before it checks an answer (see [`with_challenge`]).
//!
//! Stored keys: a passkey registered through the crate is kept as the crate's
//! `Credential` in JSON. Passkeys registered before were kept as the bare SEC1 point of
//! their P-256 key (65 bytes, `0x04 || x || y`); they are read as ES256 credentials.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::time::Duration;
use webauthn_rs_core::error::WebauthnError as CoreError;
use webauthn_rs_core::proto::{
    AttestationConveyancePreference, AttestationFormat, AuthenticatorAssertionResponseRaw,
    AuthenticatorAttestationResponseRaw, COSEAlgorithm, COSEEC2Key, COSEKey, COSEKeyType,
    Credential, ECDSACurve, ParsedAttestation, PublicKeyCredential, RegisterPublicKeyCredential,
    RegisteredExtensions, UserVerificationPolicy,
};
use webauthn_rs_core::WebauthnCore;

mod ed25519;

/// The algorithms offered to authenticators, most preferred first.
const ALGORITHMS: [COSEAlgorithm; 3] = [
    COSEAlgorithm::ES256,
    COSEAlgorithm::EDDSA,
    COSEAlgorithm::RS256,
];
const TIMEOUT_MS: u64 = 120_000;
const FLAG_BACKUP_ELIGIBLE: u8 = 0x08;

/// The relying party: this service, as the browser sees it.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    /// The host name of the public URL (`localhost`, `pay.example.com`).
    pub id: String,
    /// `scheme://host[:port]` of the public URL.
    pub origin: String,
}

impl RelyingParty {
    pub fn from_public_url(public_url: &str) -> Option<Self> {
        let url = url::Url::parse(public_url).ok()?;
        Some(RelyingParty {
            id: url.host_str()?.to_string(),
            origin: url.origin().ascii_serialization(),
        })
    }

    /// The crate's checker for this site: one origin, exactly, any sub-domain or other
    /// port refused; counters that go back refused.
    fn checker(&self) -> Result<WebauthnCore, WebauthnError> {
        let origin =
            url::Url::parse(&self.origin).map_err(|_| WebauthnError::Malformed("origin"))?;
        Ok(WebauthnCore::new_unsafe_experts_only(
            "Walleot",
            &self.id,
            vec![origin],
            Duration::from_millis(TIMEOUT_MS),
            Some(false),
            Some(false),
        ))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebauthnError {
    #[error("the browser's answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("the answer is for another ceremony, challenge or site")]
    WrongContext,
    #[error("the authenticator did not confirm the user's presence")]
    NoUserPresence,
    #[error("the authenticator did not verify the user, as this passkey did when it was made")]
    NoUserVerification,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("the signature counter went back: the passkey may have been copied")]
    CounterWentBack,
    #[error("this kind of passkey is not supported: use one with ES256, EdDSA or RS256")]
    UnsupportedKey,
    #[error("the passkey was refused: {0}")]
    Refused(String),
}

impl From<CoreError> for WebauthnError {
    fn from(e: CoreError) -> Self {
        use CoreError as E;
        match e {
            E::InvalidClientDataType
            | E::MismatchedChallenge
            | E::InvalidRPOrigin
            | E::InvalidRPIDHash
            | E::CredentialCrossOrigin
            | E::CredentialNotFound => WebauthnError::WrongContext,
            E::UserNotPresent => WebauthnError::NoUserPresence,
            E::UserNotVerified => WebauthnError::NoUserVerification,
            E::AuthenticationFailure | E::SignatureInvalid => WebauthnError::BadSignature,
            E::CredentialPossibleCompromise => WebauthnError::CounterWentBack,
            E::COSEKeyInvalidType
            | E::COSEKeyEDUnsupported
            | E::COSEKeyInvalidAlgorithm
            | E::COSEKeyECDSAInvalidCurve
            | E::COSEKeyEDDSAInvalidCurve
            | E::SshPublicKeyEDUnsupported
            | E::CredentialAlteredAlgFromRequest
            | E::CredentialInsecureCryptography => WebauthnError::UnsupportedKey,
            E::ParseCBORFailure(_)
            | E::ParseJSONFailure(_)
            | E::ParseNOMFailure
            | E::ParseInsufficientBytesAvailable
            | E::COSEKeyInvalidCBORValue
            | E::COSEKeyECDSAXYInvalid
            | E::COSEKeyRSANEInvalid
            | E::COSEKeyEDDSAXInvalid
            | E::EcdsaPointInvalid
            | E::RsaParametersInvalid
            | E::MissingAttestationCredentialData => WebauthnError::Malformed("WebAuthn data"),
            other => WebauthnError::Refused(other.to_string()),
        }
    }
}

pub fn encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

pub fn decode(text: &str) -> Result<Vec<u8>, WebauthnError> {
    URL_SAFE_NO_PAD
        .decode(text.trim_end_matches('='))
        .map_err(|_| WebauthnError::Malformed("base64url"))
}

pub fn random_bytes(n: usize) -> Vec<u8> {
    use rand::RngCore;
    let mut bytes = vec![0u8; n];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// The challenge of an approval: SHA-256 over the charge it approves and a nonce.
pub fn approval_challenge(
    session_id: &str,
    amount: i64,
    currency: &str,
    merchant_id: &str,
    nonce: &[u8],
) -> Vec<u8> {
    let mut hash = Sha256::new();
    for part in [
        b"walleot-approval-v1".as_slice(),
        session_id.as_bytes(),
        amount.to_string().as_bytes(),
        currency.as_bytes(),
        merchant_id.as_bytes(),
        nonce,
    ] {
        hash.update((part.len() as u64).to_be_bytes());
        hash.update(part);
    }
    hash.finalize().to_vec()
}

/// `PublicKeyCredentialCreationOptions`, binary fields in base64url.
pub fn registration_options(rp: &RelyingParty, challenge: &[u8], user_id: &[u8]) -> Value {
    let algorithms: Vec<Value> = ALGORITHMS
        .iter()
        .map(|alg| json!({"type": "public-key", "alg": *alg as i64}))
        .collect();
    json!({
        "rp": {"id": rp.id, "name": "Walleot"},
        "user": {"id": encode(user_id), "name": "Walleot wallet", "displayName": "Walleot wallet"},
        "challenge": encode(challenge),
        "pubKeyCredParams": algorithms,
        "authenticatorSelection": {"residentKey": "preferred", "userVerification": "preferred"},
        "attestation": "none",
        "timeout": TIMEOUT_MS
    })
}

/// `PublicKeyCredentialRequestOptions` for the payer's own credentials.
pub fn assertion_options(rp: &RelyingParty, challenge: &[u8], credential_ids: &[Vec<u8>]) -> Value {
    let allow: Vec<Value> = credential_ids
        .iter()
        .map(|id| json!({"type": "public-key", "id": encode(id)}))
        .collect();
    json!({
        "rpId": rp.id,
        "challenge": encode(challenge),
        "allowCredentials": allow,
        "userVerification": "preferred",
        "timeout": TIMEOUT_MS
    })
}

/// A ceremony state of the crate with `challenge` in place of the random one it drew.
///
/// The crate keeps the challenge private to its state types and offers no constructor
/// that takes one; their serde form (the one the crate persists between requests) is
/// the supported way in. The state is made afresh for every check from the same
/// settings, so only the challenge differs from what the crate made.
fn with_challenge<T: Serialize + DeserializeOwned>(
    state: T,
    challenge: &[u8],
) -> Result<T, WebauthnError> {
    let mut value = serde_json::to_value(state).map_err(|_| WebauthnError::Malformed("state"))?;
    match value.get_mut("challenge") {
        Some(slot @ Value::String(_)) => *slot = Value::String(encode(challenge)),
        _ => return Err(WebauthnError::Malformed("state")),
    }
    serde_json::from_value(value).map_err(|_| WebauthnError::Malformed("state"))
}

/// A credential created by the browser and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub credential_id: Vec<u8>,
    /// What to store: the crate's `Credential` in JSON (key, algorithm, flags).
    pub public_key: Vec<u8>,
    pub sign_count: u32,
    /// The COSE algorithm of the key (-7 ES256, -8 EdDSA, -257 RS256).
    pub algorithm: i64,
}

/// Checks the answer to `navigator.credentials.create` and reads the new credential.
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<NewCredential, WebauthnError> {
    let checker = rp.checker()?;
    let builder = checker
        .new_challenge_register_builder(b"walleot", "Walleot wallet", "Walleot wallet")?
        .attestation(AttestationConveyancePreference::None)
        .user_verification_policy(UserVerificationPolicy::Preferred)
        .credential_algorithms(ALGORITHMS.to_vec());
    let (_, state) = checker.generate_challenge_register(builder)?;
    let state = with_challenge(state, challenge)?;
    let answer = RegisterPublicKeyCredential {
        id: String::new(),
        raw_id: Vec::new(),
        response: AuthenticatorAttestationResponseRaw {
            attestation_object: attestation_object.to_vec(),
            client_data_json: client_data_json.to_vec(),
            transports: None,
        },
        type_: "public-key".into(),
        extensions: Default::default(),
    };
    let credential = match checker.register_credential(&answer, &state, None) {
        Err(CoreError::SshPublicKeyEDUnsupported) => ed25519::registered(attestation_object)?,
        checked => checked?,
    };
    if credential.cred_id.is_empty() {
        return Err(WebauthnError::Malformed("credential id"));
    }
    let stored =
        serde_json::to_vec(&credential).map_err(|_| WebauthnError::Malformed("credential"))?;
    Ok(NewCredential {
        credential_id: credential.cred_id.clone(),
        public_key: stored,
        sign_count: credential.counter,
        algorithm: credential.cred.type_ as i64,
    })
}

/// A passkey as stored: its id, stored key and last signature counter.
#[derive(Debug, Clone, Copy)]
pub struct StoredPasskey<'a> {
    pub credential_id: &'a [u8],
    pub public_key: &'a [u8],
    pub sign_count: u32,
}

/// The crate's credential for a stored passkey. `authenticator_data` is the answer
/// being checked: a key stored in the old form never recorded whether its passkey may
/// be backed up, so that flag is taken from the answer itself.
fn stored_credential(
    stored: &StoredPasskey<'_>,
    authenticator_data: &[u8],
) -> Result<Credential, WebauthnError> {
    let mut credential = match stored.public_key {
        [0x04, point @ ..] if point.len() == 64 => Credential {
            cred_id: stored.credential_id.to_vec(),
            cred: COSEKey {
                type_: COSEAlgorithm::ES256,
                key: COSEKeyType::EC_EC2(COSEEC2Key {
                    curve: ECDSACurve::SECP256R1,
                    x: point[..32].to_vec(),
                    y: point[32..].to_vec(),
                }),
            },
            counter: 0,
            transports: None,
            user_verified: false,
            backup_eligible: authenticator_data
                .get(32)
                .is_some_and(|flags| flags & FLAG_BACKUP_ELIGIBLE != 0),
            backup_state: false,
            registration_policy: UserVerificationPolicy::Preferred,
            extensions: RegisteredExtensions::none(),
            attestation: ParsedAttestation::default(),
            attestation_format: AttestationFormat::None,
        },
        json => {
            serde_json::from_slice::<Credential>(json).map_err(|_| WebauthnError::UnsupportedKey)?
        }
    };
    if credential.cred_id != stored.credential_id {
        return Err(WebauthnError::WrongContext);
    }
    // The counter column is the one kept up to date.
    credential.counter = stored.sign_count;
    Ok(credential)
}

/// A checked assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub sign_count: u32,
    pub user_verified: bool,
}

/// Checks the answer to `navigator.credentials.get` against the stored passkey.
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &[u8],
    stored: &StoredPasskey<'_>,
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
) -> Result<VerifiedAssertion, WebauthnError> {
    let credential = stored_credential(stored, authenticator_data)?;
    let checker = rp.checker()?;
    let builder = checker
        .new_challenge_authenticate_builder(
            vec![credential.clone()],
            Some(UserVerificationPolicy::Preferred),
        )?
        .allow_backup_eligible_upgrade(true);
    let (_, state) = checker.generate_challenge_authenticate(builder)?;
    let state = with_challenge(state, challenge)?;
    let answer = PublicKeyCredential {
        id: encode(stored.credential_id),
        raw_id: stored.credential_id.to_vec(),
        response: AuthenticatorAssertionResponseRaw {
            authenticator_data: authenticator_data.to_vec(),
            client_data_json: client_data_json.to_vec(),
            signature: signature.to_vec(),
            user_handle: None,
        },
        extensions: Default::default(),
        type_: "public-key".into(),
    };
    match checker.authenticate_single_credential(&answer, &state, &credential) {
        Ok(result) => Ok(VerifiedAssertion {
            sign_count: result.counter(),
            user_verified: result.user_verified(),
        }),
        Err(CoreError::SshPublicKeyEDUnsupported) => {
            ed25519::asserted(&credential, client_data_json, authenticator_data, signature)
        }
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::webauthn::{
        attestation, attested_auth_data, auth_data, client_data, sign, SoftKey,
    };
    use ciborium::value::Value as Cbor;
    use p256::ecdsa::SigningKey;

    fn rp() -> RelyingParty {
        RelyingParty::from_public_url("http://localhost:8080").unwrap()
    }

    fn stored<'a>(credential_id: &'a [u8], public_key: &'a [u8]) -> StoredPasskey<'a> {
        StoredPasskey {
            credential_id,
            public_key,
            sign_count: 0,
        }
    }

    /// Registers `key` as credential `id` through the checks, as the pages do.
    fn register(key: &SoftKey, id: &[u8], flags: u8) -> Result<NewCredential, WebauthnError> {
        let challenge = random_bytes(32);
        let client = client_data("webauthn.create", &challenge, "http://localhost:8080");
        let auth = attested_auth_data("localhost", flags, 0, Some((id, key.cose())));
        verify_registration(&rp(), &challenge, &client, &attestation(auth))
    }

    #[test]
    fn a_registration_then_an_assertion_verify() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let challenge = random_bytes(32);
        let client = client_data("webauthn.create", &challenge, "http://localhost:8080");
        let auth = auth_data("localhost", 0x45, 0, Some((b"cred-1", &key)));
        let credential =
            verify_registration(&rp(), &challenge, &client, &attestation(auth)).unwrap();
        assert_eq!(credential.credential_id, b"cred-1");

        let approval = approval_challenge("sess_x", 200, "usd", "mer_y", b"nonce");
        let client = client_data("webauthn.get", &approval, "http://localhost:8080");
        let auth = auth_data("localhost", 0x05, 7, None);
        let signature = sign(&key, &auth, &client);
        let verified = verify_assertion(
            &rp(),
            &approval,
            &stored(b"cred-1", &credential.public_key),
            &client,
            &auth,
            &signature,
        )
        .unwrap();
        assert_eq!(
            verified,
            VerifiedAssertion {
                sign_count: 7,
                user_verified: true
            }
        );
    }

    #[test]
    fn an_assertion_for_another_charge_site_or_key_is_refused() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let public = key
            .verifying_key()
            .to_encoded_point(false)
            .as_bytes()
            .to_vec();
        // The form passkeys were stored in before: the bare SEC1 point.
        let public = stored(b"legacy", &public);
        let approved = approval_challenge("sess_x", 200, "usd", "mer_y", b"n");
        let client = client_data("webauthn.get", &approved, "http://localhost:8080");
        let auth = auth_data("localhost", 0x01, 1, None);
        let signature = sign(&key, &auth, &client);
        let ok = verify_assertion(&rp(), &approved, &public, &client, &auth, &signature);
        assert!(ok.is_ok());

        let dearer = approval_challenge("sess_x", 20000, "usd", "mer_y", b"n");
        assert_eq!(
            verify_assertion(&rp(), &dearer, &public, &client, &auth, &signature),
            Err(WebauthnError::WrongContext)
        );
        let other_origin = client_data("webauthn.get", &approved, "http://evil.example");
        let s = sign(&key, &auth, &other_origin);
        assert_eq!(
            verify_assertion(&rp(), &approved, &public, &other_origin, &auth, &s),
            Err(WebauthnError::WrongContext)
        );
        let other_rp = auth_data("evil.example", 0x01, 1, None);
        let s = sign(&key, &other_rp, &client);
        assert_eq!(
            verify_assertion(&rp(), &approved, &public, &client, &other_rp, &s),
            Err(WebauthnError::WrongContext)
        );
        let absent = auth_data("localhost", 0x00, 1, None);
        let s = sign(&key, &absent, &client);
        assert_eq!(
            verify_assertion(&rp(), &approved, &public, &client, &absent, &s),
            Err(WebauthnError::NoUserPresence)
        );
        let stranger = SigningKey::random(&mut rand::rngs::OsRng);
        let s = sign(&stranger, &auth, &client);
        assert_eq!(
            verify_assertion(&rp(), &approved, &public, &client, &auth, &s),
            Err(WebauthnError::BadSignature)
        );
        let create = client_data("webauthn.create", &approved, "http://localhost:8080");
        let s = sign(&key, &auth, &create);
        assert_eq!(
            verify_assertion(&rp(), &approved, &public, &create, &auth, &s),
            Err(WebauthnError::WrongContext)
        );
        assert!(verify_assertion(&rp(), &approved, &public, b"{", &auth, &signature).is_err());
        assert!(
            verify_assertion(&rp(), &approved, &public, &client, &auth[..20], &signature).is_err()
        );
    }

    #[test]
    fn approval_challenges_differ_for_every_part_of_the_charge() {
        let base = approval_challenge("sess_a", 200, "usd", "mer_a", b"n");
        for other in [
            approval_challenge("sess_b", 200, "usd", "mer_a", b"n"),
            approval_challenge("sess_a", 201, "usd", "mer_a", b"n"),
            approval_challenge("sess_a", 200, "eur", "mer_a", b"n"),
            approval_challenge("sess_a", 200, "usd", "mer_b", b"n"),
            approval_challenge("sess_a", 200, "usd", "mer_a", b"m"),
        ] {
            assert_ne!(base, other);
        }
    }

    #[test]
    fn garbage_registrations_are_refused_without_panicking() {
        let challenge = random_bytes(32);
        let client = client_data("webauthn.create", &challenge, "http://localhost:8080");
        for object in [
            vec![],
            vec![0xff; 10],
            attestation(vec![1, 2, 3]),
            attestation(auth_data("localhost", 0x41, 0, None)),
        ] {
            assert!(verify_registration(&rp(), &challenge, &client, &object).is_err());
        }
    }

    #[test]
    fn rs256_passkeys_register_and_approve_and_strangers_are_refused() {
        let key = SoftKey::rs256();
        let credential = register(&key, b"hello-1", 0x45).unwrap();
        assert_eq!(credential.algorithm, -257);
        let public = stored(b"hello-1", &credential.public_key);
        let approval = approval_challenge("sess_x", 200, "usd", "mer_y", b"n");
        let client = client_data("webauthn.get", &approval, "http://localhost:8080");
        let auth = auth_data("localhost", 0x05, 1, None);
        let verified = verify_assertion(
            &rp(),
            &approval,
            &public,
            &client,
            &auth,
            &key.sign(&auth, &client),
        )
        .unwrap();
        assert_eq!(verified.sign_count, 1);

        let stranger = SoftKey::rs256();
        assert_eq!(
            verify_assertion(
                &rp(),
                &approval,
                &public,
                &client,
                &auth,
                &stranger.sign(&auth, &client)
            ),
            Err(WebauthnError::BadSignature)
        );
        let dearer = approval_challenge("sess_x", 20000, "usd", "mer_y", b"n");
        assert_eq!(
            verify_assertion(
                &rp(),
                &dearer,
                &public,
                &client,
                &auth,
                &key.sign(&auth, &client)
            ),
            Err(WebauthnError::WrongContext)
        );
        // An ES256 signature does not pass for an RS256 passkey.
        let other = SoftKey::es256();
        assert!(verify_assertion(
            &rp(),
            &approval,
            &public,
            &client,
            &auth,
            &other.sign(&auth, &client)
        )
        .is_err());
    }

    #[test]
    fn a_signature_counter_that_does_not_go_up_is_refused() {
        let key = SoftKey::es256();
        let credential = register(&key, b"cred-c", 0x45).unwrap();
        let approval = approval_challenge("sess_x", 200, "usd", "mer_y", b"n");
        let client = client_data("webauthn.get", &approval, "http://localhost:8080");
        let seen = StoredPasskey {
            credential_id: b"cred-c",
            public_key: &credential.public_key,
            sign_count: 7,
        };
        for (count, expected) in [
            (5, Err(WebauthnError::CounterWentBack)),
            (7, Err(WebauthnError::CounterWentBack)),
            (
                8,
                Ok(VerifiedAssertion {
                    sign_count: 8,
                    user_verified: true,
                }),
            ),
        ] {
            let auth = auth_data("localhost", 0x05, count, None);
            let signature = key.sign(&auth, &client);
            assert_eq!(
                verify_assertion(&rp(), &approval, &seen, &client, &auth, &signature),
                expected,
                "count {count}"
            );
        }
        // The same holds for a passkey stored in the old form.
        let SoftKey::Es256(p256_key) = &key else {
            unreachable!()
        };
        let point = p256_key.verifying_key().to_encoded_point(false);
        let legacy = StoredPasskey {
            credential_id: b"cred-c",
            public_key: point.as_bytes(),
            sign_count: 7,
        };
        let auth = auth_data("localhost", 0x05, 7, None);
        assert_eq!(
            verify_assertion(
                &rp(),
                &approval,
                &legacy,
                &client,
                &auth,
                &key.sign(&auth, &client)
            ),
            Err(WebauthnError::CounterWentBack)
        );
    }

    #[test]
    fn a_passkey_that_verified_its_user_at_registration_must_go_on_doing_so() {
        let key = SoftKey::es256();
        let credential = register(&key, b"cred-uv", 0x45).unwrap();
        let approval = approval_challenge("sess_x", 200, "usd", "mer_y", b"n");
        let client = client_data("webauthn.get", &approval, "http://localhost:8080");
        let presence_only = auth_data("localhost", 0x01, 1, None);
        assert_eq!(
            verify_assertion(
                &rp(),
                &approval,
                &stored(b"cred-uv", &credential.public_key),
                &client,
                &presence_only,
                &key.sign(&presence_only, &client)
            ),
            Err(WebauthnError::NoUserVerification)
        );
    }

    #[test]
    fn a_synced_passkey_stored_in_the_old_form_still_approves() {
        let key = SigningKey::random(&mut rand::rngs::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let approval = approval_challenge("sess_x", 200, "usd", "mer_y", b"n");
        let client = client_data("webauthn.get", &approval, "http://localhost:8080");
        // User present and verified, backup eligible and backed up.
        let auth = auth_data("localhost", 0x1d, 0, None);
        let verified = verify_assertion(
            &rp(),
            &approval,
            &stored(b"old", point.as_bytes()),
            &client,
            &auth,
            &sign(&key, &auth, &client),
        )
        .unwrap();
        assert!(verified.user_verified);
    }

    #[test]
    fn a_stored_key_under_another_credential_id_is_refused() {
        let key = SoftKey::es256();
        let credential = register(&key, b"cred-a", 0x45).unwrap();
        let approval = approval_challenge("sess_x", 200, "usd", "mer_y", b"n");
        let client = client_data("webauthn.get", &approval, "http://localhost:8080");
        let auth = auth_data("localhost", 0x05, 1, None);
        assert_eq!(
            verify_assertion(
                &rp(),
                &approval,
                &stored(b"cred-b", &credential.public_key),
                &client,
                &auth,
                &key.sign(&auth, &client)
            ),
            Err(WebauthnError::WrongContext)
        );
    }

    #[test]
    fn algorithms_not_offered_are_refused_at_registration() {
        let offered: Vec<i64> = registration_options(&rp(), b"c", b"u")["pubKeyCredParams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["alg"].as_i64().unwrap())
            .collect();
        assert_eq!(offered, [-7, -8, -257]);
        // Ed448 (COSE OKP, curve 7) is EdDSA too, but not offered and not verified.
        let ed448 = Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(1.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-8).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(7.into())),
            (Cbor::Integer((-2).into()), Cbor::Bytes(random_bytes(57))),
        ]);
        let challenge = random_bytes(32);
        let client = client_data("webauthn.create", &challenge, "http://localhost:8080");
        let auth = attested_auth_data("localhost", 0x45, 0, Some((b"ed", ed448)));
        assert_eq!(
            verify_registration(&rp(), &challenge, &client, &attestation(auth)),
            Err(WebauthnError::UnsupportedKey)
        );
    }

    /// An Ed25519 COSE_Key with the given public key bytes.
    fn ed25519_cose(x: Vec<u8>) -> Cbor {
        Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(1.into())),
            (Cbor::Integer(3.into()), Cbor::Integer((-8).into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(6.into())),
            (Cbor::Integer((-2).into()), Cbor::Bytes(x)),
        ])
    }

    #[test]
    fn ed25519_passkeys_register_and_approve_with_every_check_of_the_others() {
        let key = SoftKey::ed25519();
        let credential = register(&key, b"ed-1", 0x45).unwrap();
        assert_eq!(credential.algorithm, -8);
        assert_eq!(credential.credential_id, b"ed-1");
        assert!(String::from_utf8_lossy(&credential.public_key).contains("EDDSA"));
        let public = StoredPasskey {
            credential_id: b"ed-1",
            public_key: &credential.public_key,
            sign_count: 3,
        };
        let approval = approval_challenge("sess_x", 200, "usd", "mer_y", b"n");
        let client = client_data("webauthn.get", &approval, "http://localhost:8080");
        let auth = auth_data("localhost", 0x05, 4, None);
        let good = key.sign(&auth, &client);
        assert_eq!(
            verify_assertion(&rp(), &approval, &public, &client, &auth, &good),
            Ok(VerifiedAssertion {
                sign_count: 4,
                user_verified: true
            })
        );

        // What the crate checks before the signature still refuses.
        let dearer = approval_challenge("sess_x", 20000, "usd", "mer_y", b"n");
        let elsewhere = client_data("webauthn.get", &approval, "http://evil.example");
        let create = client_data("webauthn.create", &approval, "http://localhost:8080");
        for (challenge, client) in [
            (&dearer, &client),
            (&approval, &elsewhere),
            (&approval, &create),
        ] {
            let signature = key.sign(&auth, client);
            assert_eq!(
                verify_assertion(&rp(), challenge, &public, client, &auth, &signature),
                Err(WebauthnError::WrongContext)
            );
        }
        let other_site = auth_data("evil.example", 0x05, 4, None);
        let absent = auth_data("localhost", 0x00, 4, None);
        let unverified = auth_data("localhost", 0x01, 4, None);
        for (auth, expected) in [
            (other_site, WebauthnError::WrongContext),
            (absent, WebauthnError::NoUserPresence),
            (unverified, WebauthnError::NoUserVerification),
        ] {
            let signature = key.sign(&auth, &client);
            assert_eq!(
                verify_assertion(&rp(), &approval, &public, &client, &auth, &signature),
                Err(expected)
            );
        }

        // What the crate leaves to the key: the signature and the counter.
        let stranger = SoftKey::ed25519().sign(&auth, &client);
        let mut flipped = good.clone();
        flipped[10] ^= 1;
        for signature in [
            stranger,
            flipped,
            good[..63].to_vec(),
            SoftKey::es256().sign(&auth, &client),
        ] {
            assert_eq!(
                verify_assertion(&rp(), &approval, &public, &client, &auth, &signature),
                Err(WebauthnError::BadSignature)
            );
        }
        let other_charge = client_data("webauthn.get", &dearer, "http://localhost:8080");
        assert_eq!(
            verify_assertion(
                &rp(),
                &approval,
                &public,
                &client,
                &auth,
                &key.sign(&auth, &other_charge)
            ),
            Err(WebauthnError::BadSignature),
            "a signature over other client data"
        );
        for count in [2, 3] {
            let auth = auth_data("localhost", 0x05, count, None);
            let signature = key.sign(&auth, &client);
            assert_eq!(
                verify_assertion(&rp(), &approval, &public, &client, &auth, &signature),
                Err(WebauthnError::CounterWentBack),
                "count {count}"
            );
        }
        // Another key under the same credential id.
        assert_eq!(
            verify_assertion(
                &rp(),
                &approval,
                &stored(b"ed-2", &credential.public_key),
                &client,
                &auth,
                &good
            ),
            Err(WebauthnError::WrongContext)
        );
    }

    #[test]
    fn ed25519_registrations_are_checked_as_the_others_and_bad_keys_refused() {
        let key = SoftKey::ed25519();
        let challenge = random_bytes(32);
        let good = client_data("webauthn.create", &challenge, "http://localhost:8080");
        let object = |rp_id: &str, flags: u8, cose: Cbor| {
            attestation(attested_auth_data(rp_id, flags, 0, Some((b"e", cose))))
        };
        assert!(verify_registration(
            &rp(),
            &challenge,
            &good,
            &object("localhost", 0x45, key.cose())
        )
        .is_ok());
        let elsewhere = client_data("webauthn.create", &challenge, "http://localhost:9999");
        assert_eq!(
            verify_registration(
                &rp(),
                &challenge,
                &elsewhere,
                &object("localhost", 0x45, key.cose())
            ),
            Err(WebauthnError::WrongContext)
        );
        assert_eq!(
            verify_registration(
                &rp(),
                b"other",
                &good,
                &object("localhost", 0x45, key.cose())
            ),
            Err(WebauthnError::WrongContext)
        );
        assert_eq!(
            verify_registration(
                &rp(),
                &challenge,
                &good,
                &object("evil.example", 0x45, key.cose())
            ),
            Err(WebauthnError::WrongContext)
        );
        assert_eq!(
            verify_registration(
                &rp(),
                &challenge,
                &good,
                &object("localhost", 0x44, key.cose())
            ),
            Err(WebauthnError::NoUserPresence)
        );
        // Backed up but not eligible for backup.
        assert!(verify_registration(
            &rp(),
            &challenge,
            &good,
            &object("localhost", 0x55, key.cose())
        )
        .is_err());
        // A short key (the crate refuses it), and a point of small order (the identity),
        // are no keys.
        let mut identity = vec![0u8; 32];
        identity[0] = 1;
        for (x, expected) in [
            (random_bytes(31), "WebAuthn data"),
            (identity, "Ed25519 key"),
        ] {
            assert_eq!(
                verify_registration(
                    &rp(),
                    &challenge,
                    &good,
                    &object("localhost", 0x45, ed25519_cose(x))
                ),
                Err(WebauthnError::Malformed(expected))
            );
        }
        // A packed self-attestation stops the crate inside the attestation check, which
        // is not taken over.
        let auth = attested_auth_data("localhost", 0x45, 0, Some((b"e", key.cose())));
        let packed = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("packed".into())),
            (
                Cbor::Text("attStmt".into()),
                Cbor::Map(vec![
                    (Cbor::Text("alg".into()), Cbor::Integer((-8).into())),
                    (
                        Cbor::Text("sig".into()),
                        Cbor::Bytes(key.sign(&auth, &good)),
                    ),
                ]),
            ),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth)),
        ]);
        let mut packed_object = Vec::new();
        ciborium::into_writer(&packed, &mut packed_object).unwrap();
        assert_eq!(
            verify_registration(&rp(), &challenge, &good, &packed_object),
            Err(WebauthnError::UnsupportedKey)
        );
    }

    #[test]
    fn a_registration_for_another_challenge_site_or_without_presence_is_refused() {
        let key = SoftKey::es256();
        let challenge = random_bytes(32);
        let good = client_data("webauthn.create", &challenge, "http://localhost:8080");
        let auth = |rp_id: &str, flags: u8| {
            attestation(attested_auth_data(
                rp_id,
                flags,
                0,
                Some((b"c", key.cose())),
            ))
        };
        assert!(verify_registration(&rp(), &challenge, &good, &auth("localhost", 0x45)).is_ok());
        let other_challenge = client_data("webauthn.create", b"other", "http://localhost:8080");
        let other_origin = client_data("webauthn.create", &challenge, "http://localhost:9999");
        let get = client_data("webauthn.get", &challenge, "http://localhost:8080");
        for client in [other_challenge, other_origin, get] {
            assert_eq!(
                verify_registration(&rp(), &challenge, &client, &auth("localhost", 0x45)),
                Err(WebauthnError::WrongContext)
            );
        }
        assert_eq!(
            verify_registration(&rp(), &challenge, &good, &auth("evil.example", 0x45)),
            Err(WebauthnError::WrongContext)
        );
        assert_eq!(
            verify_registration(&rp(), &challenge, &good, &auth("localhost", 0x44)),
            Err(WebauthnError::NoUserPresence)
        );
    }
}
