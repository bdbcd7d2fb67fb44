//! WebAuthn for passkeys: the options a browser needs, and the checks of what it answers.
//!
//! Registration reads the new credential's P-256 public key from the attestation
//! object; the attestation statement itself is not checked (the service asks for
//! attestation "none": it needs a key, not the authenticator's make). Assertions are
//! checked in full: type, challenge, origin, relying-party hash, user presence, the
//! ECDSA signature over the authenticator data and the client data hash, and the
//! signature counter.
//!
//! The challenge of an approval is derived from the charge (session, amount, currency,
//! merchant) and a nonce, so the stored assertion proves which charge it approved.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ciborium::value::Value as Cbor;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// COSE algorithm number of ES256 (ECDSA on P-256 with SHA-256).
const ES256: i64 = -7;
const FLAG_USER_PRESENT: u8 = 0x01;
const FLAG_USER_VERIFIED: u8 = 0x04;
const FLAG_ATTESTED_DATA: u8 = 0x40;

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
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebauthnError {
    #[error("the browser's answer is malformed: {0}")]
    Malformed(&'static str),
    #[error("the answer is for another ceremony, challenge or site")]
    WrongContext,
    #[error("the authenticator did not confirm the user's presence")]
    NoUserPresence,
    #[error("the signature does not verify")]
    BadSignature,
    #[error("only ES256 (P-256) passkeys are supported")]
    UnsupportedKey,
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
    json!({
        "rp": {"id": rp.id, "name": "Walleot"},
        "user": {"id": encode(user_id), "name": "Walleot wallet", "displayName": "Walleot wallet"},
        "challenge": encode(challenge),
        "pubKeyCredParams": [{"type": "public-key", "alg": ES256}],
        "authenticatorSelection": {"residentKey": "preferred", "userVerification": "preferred"},
        "attestation": "none",
        "timeout": 120000
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
        "timeout": 120000
    })
}

#[derive(Deserialize)]
struct ClientData {
    #[serde(rename = "type")]
    kind: String,
    challenge: String,
    origin: String,
}

fn check_client_data(
    rp: &RelyingParty,
    kind: &str,
    challenge: &[u8],
    client_data_json: &[u8],
) -> Result<(), WebauthnError> {
    let data: ClientData = serde_json::from_slice(client_data_json)
        .map_err(|_| WebauthnError::Malformed("clientDataJSON"))?;
    let sent = decode(&data.challenge)?;
    let same_challenge = sent.len() == challenge.len() && sent.ct_eq(challenge).unwrap_u8() == 1;
    if data.kind != kind || !same_challenge || data.origin != rp.origin {
        return Err(WebauthnError::WrongContext);
    }
    Ok(())
}

struct AuthData<'a> {
    flags: u8,
    sign_count: u32,
    /// What follows the fixed 37 bytes.
    rest: &'a [u8],
}

fn parse_auth_data<'a>(rp: &RelyingParty, bytes: &'a [u8]) -> Result<AuthData<'a>, WebauthnError> {
    if bytes.len() < 37 {
        return Err(WebauthnError::Malformed("authenticatorData"));
    }
    let rp_hash = Sha256::digest(rp.id.as_bytes());
    if bytes[..32].ct_eq(rp_hash.as_slice()).unwrap_u8() != 1 {
        return Err(WebauthnError::WrongContext);
    }
    let flags = bytes[32];
    if flags & FLAG_USER_PRESENT == 0 {
        return Err(WebauthnError::NoUserPresence);
    }
    Ok(AuthData {
        flags,
        sign_count: u32::from_be_bytes([bytes[33], bytes[34], bytes[35], bytes[36]]),
        rest: &bytes[37..],
    })
}

/// A credential created by the browser and checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCredential {
    pub credential_id: Vec<u8>,
    /// SEC1 uncompressed P-256 point.
    pub public_key: Vec<u8>,
    pub sign_count: u32,
}

fn cbor_get<'a>(map: &'a [(Cbor, Cbor)], key: &Cbor) -> Option<&'a Cbor> {
    map.iter().find(|(k, _)| k == key).map(|(_, v)| v)
}

fn cose_p256_key(cose: &Cbor) -> Result<Vec<u8>, WebauthnError> {
    let map = cose
        .as_map()
        .ok_or(WebauthnError::Malformed("credential public key"))?;
    let int = |n: i64| Cbor::Integer(n.into());
    let as_int = |v: Option<&Cbor>| v.and_then(|v| v.as_integer()).map(i128::from);
    if as_int(cbor_get(map, &int(1))) != Some(2)
        || as_int(cbor_get(map, &int(3))) != Some(i128::from(ES256))
        || as_int(cbor_get(map, &int(-1))) != Some(1)
    {
        return Err(WebauthnError::UnsupportedKey);
    }
    let coordinate = |n: i64| {
        cbor_get(map, &int(n))
            .and_then(|v| v.as_bytes())
            .filter(|b| b.len() == 32)
            .ok_or(WebauthnError::Malformed("EC2 coordinate"))
    };
    let mut point = vec![0x04];
    point.extend_from_slice(coordinate(-2)?);
    point.extend_from_slice(coordinate(-3)?);
    VerifyingKey::from_sec1_bytes(&point).map_err(|_| WebauthnError::UnsupportedKey)?;
    Ok(point)
}

/// Checks the answer to `navigator.credentials.create` and reads the new credential.
pub fn verify_registration(
    rp: &RelyingParty,
    challenge: &[u8],
    client_data_json: &[u8],
    attestation_object: &[u8],
) -> Result<NewCredential, WebauthnError> {
    check_client_data(rp, "webauthn.create", challenge, client_data_json)?;
    let object: Cbor = ciborium::from_reader(attestation_object)
        .map_err(|_| WebauthnError::Malformed("attestationObject"))?;
    let map = object
        .as_map()
        .ok_or(WebauthnError::Malformed("attestationObject"))?;
    let auth_data = cbor_get(map, &Cbor::Text("authData".into()))
        .and_then(|v| v.as_bytes())
        .ok_or(WebauthnError::Malformed("authData"))?;
    let parsed = parse_auth_data(rp, auth_data)?;
    if parsed.flags & FLAG_ATTESTED_DATA == 0 || parsed.rest.len() < 18 {
        return Err(WebauthnError::Malformed("attested credential data"));
    }
    let id_len = usize::from(u16::from_be_bytes([parsed.rest[16], parsed.rest[17]]));
    let after_id = 18 + id_len;
    if id_len == 0 || parsed.rest.len() <= after_id {
        return Err(WebauthnError::Malformed("credential id"));
    }
    let credential_id = parsed.rest[18..after_id].to_vec();
    let cose: Cbor = ciborium::from_reader(&parsed.rest[after_id..])
        .map_err(|_| WebauthnError::Malformed("credential public key"))?;
    Ok(NewCredential {
        credential_id,
        public_key: cose_p256_key(&cose)?,
        sign_count: parsed.sign_count,
    })
}

/// A checked assertion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedAssertion {
    pub sign_count: u32,
    pub user_verified: bool,
}

/// Checks the answer to `navigator.credentials.get` against the stored public key.
pub fn verify_assertion(
    rp: &RelyingParty,
    challenge: &[u8],
    public_key: &[u8],
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature_der: &[u8],
) -> Result<VerifiedAssertion, WebauthnError> {
    check_client_data(rp, "webauthn.get", challenge, client_data_json)?;
    let parsed = parse_auth_data(rp, authenticator_data)?;
    let key =
        VerifyingKey::from_sec1_bytes(public_key).map_err(|_| WebauthnError::UnsupportedKey)?;
    let signature =
        Signature::from_der(signature_der).map_err(|_| WebauthnError::Malformed("signature"))?;
    let mut signed = authenticator_data.to_vec();
    signed.extend_from_slice(&Sha256::digest(client_data_json));
    key.verify(&signed, &signature)
        .map_err(|_| WebauthnError::BadSignature)?;
    Ok(VerifiedAssertion {
        sign_count: parsed.sign_count,
        user_verified: parsed.flags & FLAG_USER_VERIFIED != 0,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::webauthn::{attestation, auth_data, client_data, sign};
    use p256::ecdsa::SigningKey;

    fn rp() -> RelyingParty {
        RelyingParty::from_public_url("http://localhost:8080").unwrap()
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
            &credential.public_key,
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
}
