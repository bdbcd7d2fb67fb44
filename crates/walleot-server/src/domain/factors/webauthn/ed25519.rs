//! Ed25519 passkeys (COSE EdDSA), where webauthn-rs-core stops.
//!
//! webauthn-rs-core 0.6 reads Ed25519 keys but cannot verify with them: it runs every
//! check of a ceremony and fails with `SshPublicKeyEDUnsupported` at the one step that
//! needs the key (making the credential from the attested key at registration, the
//! signature at an assertion). These functions take over from that step only: what the
//! crate checked before it is not checked again, the crate's parser reads the
//! authenticator data, and ed25519-dalek checks the key and the signature.

use super::WebauthnError;
use ciborium::value::Value as Cbor;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use webauthn_rs_core::error::WebauthnError as CoreError;
use webauthn_rs_core::internals::AuthenticatorData;
use webauthn_rs_core::proto::{
    AttestationFormat, Authentication, COSEAlgorithm, COSEKey, COSEKeyType, COSEOKPKey, Credential,
    EDDSACurve, ParsedAttestation, RegisteredExtensions, Registration, UserVerificationPolicy,
};

/// COSE key parameters (RFC 9053): key type OKP, curve Ed25519.
const KTY_OKP: i128 = 1;
const CRV_ED25519: i128 = 6;

/// The credential of a registration the crate checked up to its Ed25519 key.
///
/// Only an attestation of format "none" (the one the service asks for) passed every
/// check before the key: with another format, the crate stopped while checking the
/// attestation statement itself, which this does not take over.
pub(super) fn registered(attestation_object: &[u8]) -> Result<Credential, WebauthnError> {
    let object: Cbor = ciborium::from_reader(attestation_object)
        .map_err(|_| WebauthnError::Malformed("attestation object"))?;
    let entry = |name: &str| {
        object.as_map().and_then(|entries| {
            entries
                .iter()
                .find(|(key, _)| key.as_text() == Some(name))
                .map(|(_, value)| value)
        })
    };
    if entry("fmt").and_then(Cbor::as_text) != Some("none") {
        return Err(WebauthnError::UnsupportedKey);
    }
    let auth_data = entry("authData")
        .and_then(Cbor::as_bytes)
        .ok_or(WebauthnError::Malformed("authenticator data"))?;
    let auth = AuthenticatorData::<Registration>::try_from(auth_data.as_slice())?;
    let attested = auth
        .acd
        .as_ref()
        .ok_or(CoreError::MissingAttestationCredentialData)?;
    let key = Cbor::serialized(&attested.credential_pk)
        .map_err(|_| WebauthnError::Malformed("credential key"))?;
    let x = ed25519_key(&key)?;
    if auth.backup_state && !auth.backup_eligible {
        return Err(CoreError::CredentialMayNotBeHardwareBound.into());
    }
    Ok(Credential {
        cred_id: attested.credential_id.clone(),
        cred: COSEKey {
            type_: COSEAlgorithm::EDDSA,
            key: COSEKeyType::EC_OKP(COSEOKPKey {
                curve: EDDSACurve::ED25519,
                x: x.to_vec(),
            }),
        },
        counter: auth.counter,
        transports: None,
        user_verified: auth.user_verified,
        backup_eligible: auth.backup_eligible,
        backup_state: auth.backup_state,
        registration_policy: UserVerificationPolicy::Preferred,
        extensions: RegisteredExtensions::none(),
        attestation: ParsedAttestation::default(),
        attestation_format: AttestationFormat::None,
    })
}

/// The public key of a COSE_Key that is an Ed25519 key, and a sound one.
fn ed25519_key(key: &Cbor) -> Result<[u8; 32], WebauthnError> {
    let param = |label: i128| {
        key.as_map().and_then(|entries| {
            entries
                .iter()
                .find(|(k, _)| k.as_integer().map(i128::from) == Some(label))
                .map(|(_, value)| value)
        })
    };
    let integer = |label| param(label).and_then(Cbor::as_integer).map(i128::from);
    if integer(1) != Some(KTY_OKP)
        || integer(3) != Some(COSEAlgorithm::EDDSA as i128)
        || integer(-1) != Some(CRV_ED25519)
    {
        return Err(WebauthnError::UnsupportedKey);
    }
    let x: [u8; 32] = param(-2)
        .and_then(Cbor::as_bytes)
        .and_then(|x| x.as_slice().try_into().ok())
        .ok_or(WebauthnError::Malformed("Ed25519 key"))?;
    match VerifyingKey::from_bytes(&x) {
        Ok(key) if !key.is_weak() => Ok(x),
        _ => Err(WebauthnError::Malformed("Ed25519 key")),
    }
}

/// The rest of an assertion the crate checked up to the signature of an Ed25519 key:
/// the signature over the authenticator data and the client data hash, then the
/// signature counter as the crate checks it for other keys.
pub(super) fn asserted(
    credential: &Credential,
    client_data_json: &[u8],
    authenticator_data: &[u8],
    signature: &[u8],
) -> Result<super::VerifiedAssertion, WebauthnError> {
    let x: &[u8; 32] = match &credential.cred.key {
        COSEKeyType::EC_OKP(COSEOKPKey {
            curve: EDDSACurve::ED25519,
            x,
        }) => x
            .as_slice()
            .try_into()
            .map_err(|_| WebauthnError::UnsupportedKey)?,
        _ => return Err(WebauthnError::UnsupportedKey),
    };
    let key = VerifyingKey::from_bytes(x).map_err(|_| WebauthnError::UnsupportedKey)?;
    let signature = Signature::from_slice(signature).map_err(|_| WebauthnError::BadSignature)?;
    let mut signed = authenticator_data.to_vec();
    signed.extend_from_slice(&Sha256::digest(client_data_json));
    key.verify_strict(&signed, &signature)
        .map_err(|_| WebauthnError::BadSignature)?;
    let auth = AuthenticatorData::<Authentication>::try_from(authenticator_data)?;
    if (auth.counter > 0 || credential.counter > 0) && auth.counter <= credential.counter {
        return Err(WebauthnError::CounterWentBack);
    }
    Ok(super::VerifiedAssertion {
        sign_count: auth.counter,
        user_verified: auth.user_verified,
    })
}
