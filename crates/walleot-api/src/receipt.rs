use crate::Currency;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a receipt attests, signed by the service: a captured payment. The payload of
/// the receipt's JWS.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ReceiptClaims {
    /// The service that signed it (its public address).
    pub iss: String,
    pub session_id: String,
    pub merchant_id: String,
    /// What moved to the merchant, in minor units.
    pub amount_captured: i64,
    pub currency: Currency,
    pub livemode: bool,
    /// The session's metadata (the SDKs record the tool and its arguments' hash).
    pub metadata: BTreeMap<String, String>,
    /// When the money moved to the merchant, RFC 3339, UTC.
    pub captured_at: String,
    /// What was refunded of it when the receipt was issued, in minor units.
    pub amount_refunded: i64,
    /// When the receipt was issued, in seconds since the Unix epoch: of two receipts of
    /// one session, the later tells the later state.
    pub iat: i64,
}

/// `GET /v1/sessions/{sessionId}/receipt`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Receipt {
    pub session_id: String,
    /// A compact JWS (`alg: EdDSA`) whose payload is the receipt's claims; verify it
    /// with the key of its `kid` at `/.well-known/jwks.json`.
    pub receipt: String,
    /// The id of the key that signed it.
    pub key_id: String,
}

/// A public key of the service, as JWKS publishes it (RFC 8037: `kty: OKP`,
/// `crv: Ed25519`, `x` the key in base64url).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    pub x: String,
    pub kid: String,
    pub alg: String,
    #[serde(rename = "use")]
    pub use_: String,
}

/// `/.well-known/jwks.json`: every key that signed receipts, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}
