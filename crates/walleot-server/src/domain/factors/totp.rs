//! Time-based one-time passwords (RFC 6238): HMAC-SHA1, 30-second steps, six digits,
//! as every authenticator app computes them.

use hmac::{Hmac, Mac};
use sha1::Sha1;
use subtle::ConstantTimeEq;

pub const STEP_SECS: i64 = 30;
const DIGITS: u32 = 6;
/// Steps of clock drift accepted on either side.
const DRIFT: i64 = 1;

/// A new random 160-bit secret.
pub fn new_secret() -> Vec<u8> {
    use rand::RngCore;
    let mut secret = vec![0u8; 20];
    rand::rngs::OsRng.fill_bytes(&mut secret);
    secret
}

/// The secret as authenticator apps take it typed in: base32 without padding.
pub fn secret_text(secret: &[u8]) -> String {
    data_encoding::BASE32_NOPAD.encode(secret)
}

pub fn secret_from_text(text: &str) -> Option<Vec<u8>> {
    data_encoding::BASE32_NOPAD.decode(text.as_bytes()).ok()
}

/// The `otpauth://` URI that a QR code carries.
pub fn provisioning_uri(secret: &[u8], account: &str) -> String {
    let label: String = url::form_urlencoded::byte_serialize(account.as_bytes()).collect();
    format!(
        "otpauth://totp/Walleot:{label}?secret={}&issuer=Walleot&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        secret_text(secret)
    )
}

/// The code of one time step.
pub fn code_at(secret: &[u8], step: i64) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret).expect("HMAC accepts any key length");
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[19] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(DIGITS),
        width = DIGITS as usize
    )
}

/// The time step `code` matches at `now_ms`, within the accepted drift.
pub fn matching_step(secret: &[u8], code: &str, now_ms: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let current = now_ms.div_euclid(1000) / STEP_SECS;
    (current - DRIFT..=current + DRIFT).find(|step| {
        code_at(secret, *step)
            .as_bytes()
            .ct_eq(code.as_bytes())
            .unwrap_u8()
            == 1
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_match_the_rfc_6238_sha1_vectors() {
        let secret = b"12345678901234567890";
        // RFC 6238 appendix B gives eight digits; six are their last six.
        for (time, eight) in [
            (59, "94287082"),
            (1_111_111_109, "07081804"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
        ] {
            assert_eq!(code_at(secret, time / STEP_SECS), eight[2..], "T={time}");
        }
    }

    #[test]
    fn a_code_matches_within_one_step_of_drift_only() {
        let secret = new_secret();
        let now = 1_700_000_000_000;
        let step = now / 1000 / STEP_SECS;
        assert_eq!(
            matching_step(&secret, &code_at(&secret, step), now),
            Some(step)
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, step - 1), now),
            Some(step - 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, step + 2), now),
            None
        );
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
    }

    #[test]
    fn secrets_round_trip_through_their_text() {
        let secret = new_secret();
        assert_eq!(
            secret_from_text(&secret_text(&secret)),
            Some(secret.clone())
        );
        assert!(provisioning_uri(&secret, "payer 1")
            .starts_with("otpauth://totp/Walleot:payer+1?secret="));
    }
}
