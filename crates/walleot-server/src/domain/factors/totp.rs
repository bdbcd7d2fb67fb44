//! Time-based one-time passwords (RFC 6238): HMAC-SHA1, 30-second steps, six digits,
//! as every authenticator app computes them. The codes and their check come from the
//! `totp-rs` crate; this module keeps the service's choices: the secret's form, the
//! URI the QR code carries, and a window of one step either side.
//!
//! The crate tells which time step a code matched but does not remember it: the caller
//! stores the step it accepted (`last_step` of `totp_secrets`) so that each is used once.

use totp_rs::{Algorithm, Builder, Totp};

pub const STEP_SECS: i64 = 30;
const DIGITS: u8 = 6;
/// Steps of clock drift accepted on either side.
const DRIFT: u16 = 1;

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

/// The `otpauth://` URI that a QR code carries. Every parameter is spelled out, so that
/// no app has to guess a default.
pub fn provisioning_uri(secret: &[u8], account: &str) -> String {
    let label: String = url::form_urlencoded::byte_serialize(account.as_bytes()).collect();
    format!(
        "otpauth://totp/Walleot:{label}?secret={}&issuer=Walleot&algorithm=SHA1&digits={DIGITS}&period={STEP_SECS}",
        secret_text(secret)
    )
}

/// The generator for `secret`; `None` for a secret shorter than RFC 4226's 128 bits,
/// which this service never makes.
fn generator(secret: &[u8]) -> Option<Totp> {
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(DIGITS)
        .with_step_duration(STEP_SECS as u64)
        .with_skew(DRIFT)
        .with_secret(secret.to_vec())
        .build()
        .ok()
}

/// The code of one time step, as the payer's app shows it.
pub fn code_at(secret: &[u8], step: i64) -> String {
    let generator = generator(secret).expect("a secret of at least 128 bits");
    let time = u64::try_from(step).unwrap_or(0) * STEP_SECS as u64;
    generator.generate(time).to_string()
}

/// The time step `code` matches at `now_ms`, within the accepted drift.
pub fn matching_step(secret: &[u8], code: &str, now_ms: i64) -> Option<i64> {
    let code: String = code.chars().filter(|c| !c.is_whitespace()).collect();
    let now = u64::try_from(now_ms.div_euclid(1000)).ok()?;
    let step = generator(secret)?.check(&code, now)?;
    i64::try_from(step).ok()
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
            matching_step(&secret, &code_at(&secret, step + 1), now),
            Some(step + 1)
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, step + 2), now),
            None
        );
        assert_eq!(
            matching_step(&secret, &code_at(&secret, step - 2), now),
            None
        );
        assert_eq!(matching_step(&secret, "12345", now), None);
        assert_eq!(matching_step(&secret, "abcdef", now), None);
        assert_eq!(matching_step(&secret, "+12345", now), None);
    }

    #[test]
    fn a_code_typed_with_spaces_still_matches() {
        let secret = new_secret();
        let now = 1_700_000_000_000;
        let step = now / 1000 / STEP_SECS;
        let code = code_at(&secret, step);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(matching_step(&secret, &spaced, now), Some(step));
    }

    #[test]
    fn secrets_round_trip_through_their_text() {
        let secret = new_secret();
        assert_eq!(
            secret_from_text(&secret_text(&secret)),
            Some(secret.clone())
        );
        assert_eq!(
            provisioning_uri(&secret, "payer 1"),
            format!(
                "otpauth://totp/Walleot:payer+1?secret={}&issuer=Walleot&algorithm=SHA1&digits=6&period=30",
                secret_text(&secret)
            )
        );
    }
}
