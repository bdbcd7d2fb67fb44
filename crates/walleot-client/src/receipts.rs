//! Checking a receipt: a compact JWS signed with Ed25519 by the service, verified
//! against its published keys (`/.well-known/jwks.json`) without asking the service.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ed25519_dalek::{Signature, VerifyingKey};
use walleot_api::{Jwks, ReceiptClaims};

/// Why a receipt does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    #[error("the receipt is not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("the receipt is signed with `{0}`, not EdDSA")]
    Algorithm(String),
    #[error("no published key has the receipt's key id `{0}`")]
    UnknownKey(String),
    #[error("the published key `{0}` is not an Ed25519 key")]
    BadKey(String),
    #[error("the signature does not match the receipt")]
    Signature,
}

/// Verifies `receipt` with the key its header names among `jwks`, and answers what it
/// attests. Any change to the header, the claims or the signature fails it. Check the
/// claims' `livemode` (test-mode payments have receipts too, under the same keys) and
/// `iss`; on [`ReceiptError::UnknownKey`], fetch the JWKS again: a rotated key signs at
/// once.
pub fn verify_receipt(receipt: &str, jwks: &Jwks) -> Result<ReceiptClaims, ReceiptError> {
    let mut parts = receipt.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(ReceiptError::Malformed("it has not three parts"));
    };
    let decode = |part: &str, what| {
        URL_SAFE_NO_PAD
            .decode(part)
            .map_err(|_| ReceiptError::Malformed(what))
    };
    let head: serde_json::Value =
        serde_json::from_slice(&decode(header, "the header is not base64url")?)
            .map_err(|_| ReceiptError::Malformed("the header is not JSON"))?;
    let alg = head["alg"].as_str().unwrap_or_default();
    if alg != "EdDSA" {
        return Err(ReceiptError::Algorithm(alg.to_string()));
    }
    let kid = head["kid"].as_str().unwrap_or_default();
    let jwk = jwks
        .keys
        .iter()
        .find(|k| k.kid == kid)
        .ok_or_else(|| ReceiptError::UnknownKey(kid.to_string()))?;
    let bad_key = || ReceiptError::BadKey(kid.to_string());
    if jwk.kty != "OKP" || jwk.crv != "Ed25519" {
        return Err(bad_key());
    }
    let x: [u8; 32] = URL_SAFE_NO_PAD
        .decode(&jwk.x)
        .ok()
        .and_then(|x| x.try_into().ok())
        .ok_or_else(bad_key)?;
    let key = VerifyingKey::from_bytes(&x).map_err(|_| bad_key())?;
    let signature: [u8; 64] = decode(signature, "the signature is not base64url")?
        .try_into()
        .map_err(|_| ReceiptError::Malformed("the signature is not 64 bytes"))?;
    key.verify_strict(
        format!("{header}.{payload}").as_bytes(),
        &Signature::from_bytes(&signature),
    )
    .map_err(|_| ReceiptError::Signature)?;
    serde_json::from_slice(&decode(payload, "the payload is not base64url")?)
        .map_err(|_| ReceiptError::Malformed("the payload is not the receipt's claims"))
}
