//! Request state for MCP 2026-07-28 round trips: the payment id, sealed with an HMAC so
//! that a client can carry it back but cannot forge or move it, whichever server
//! instance (sharing the secret) receives the retry.

use base64::Engine;
use hmac::Mac;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

const CONTEXT: &[u8] = b"walleot-mcp-request-state";

fn mac(secret: &[u8], payment_id: &str) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(CONTEXT);
    mac.update(payment_id.as_bytes());
    mac
}

/// `payment_id.tag`.
pub(crate) fn seal(secret: &[u8], payment_id: &str) -> String {
    let tag = mac(secret, payment_id).finalize().into_bytes();
    format!(
        "{payment_id}.{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    )
}

/// The payment id of a state this secret sealed; `None` for anything else.
pub(crate) fn open(secret: &[u8], state: &str) -> Option<String> {
    let (payment_id, tag) = state.rsplit_once('.')?;
    let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(tag)
        .ok()?;
    // `verify_slice` compares in constant time.
    mac(secret, payment_id)
        .verify_slice(&tag)
        .ok()
        .map(|()| payment_id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seal_opens_only_with_its_secret_and_payment() {
        let sealed = seal(b"secret", "pay_abc");
        assert_eq!(open(b"secret", &sealed).as_deref(), Some("pay_abc"));
        assert_eq!(open(b"other", &sealed), None);
        let moved = sealed.replacen("pay_abc", "pay_abd", 1);
        assert_eq!(open(b"secret", &moved), None);
        assert_eq!(open(b"secret", "pay_abc"), None);
        assert_eq!(open(b"secret", "pay_abc.!!"), None);
    }
}
