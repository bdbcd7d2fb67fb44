//! Checking that a webhook delivery comes from the service (the Standard Webhooks
//! scheme): its signature, made with the endpoint's secret, and its age.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use walleot_api::Event;

pub use walleot_api::webhook_headers;

/// How far a delivery's timestamp may be from now: a captured delivery sent again
/// later is refused.
pub const DEFAULT_TOLERANCE: Duration = Duration::from_secs(300);

/// Why a delivery was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("the secret is not a `whsec_…` secret")]
    BadSecret,
    #[error("the webhook-timestamp header is not a number of seconds")]
    BadTimestamp,
    #[error("the webhook-timestamp is further from now than the tolerance")]
    Stale,
    #[error("no signature of the webhook-signature header matches")]
    NoMatchingSignature,
    #[error("the body is not an event: {0}")]
    BadBody(String),
}

/// Checks a delivery with the endpoint's secret and [`DEFAULT_TOLERANCE`], and reads
/// its event: `id`, `timestamp` and `signature` are the values of the `webhook-id`,
/// `webhook-timestamp` and `webhook-signature` headers, `body` the raw body, unparsed.
/// Deliveries may repeat: drop an event whose `webhook-id` was already handled.
pub fn verify_webhook(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
) -> Result<Event, WebhookError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    verify_webhook_at(
        secret,
        id,
        timestamp,
        signature,
        body,
        now,
        DEFAULT_TOLERANCE,
    )
}

/// [`verify_webhook`] at `now` (seconds since the Unix epoch) with a tolerance of one's
/// own.
pub fn verify_webhook_at(
    secret: &str,
    id: &str,
    timestamp: &str,
    signature: &str,
    body: &[u8],
    now: i64,
    tolerance: Duration,
) -> Result<Event, WebhookError> {
    let key = secret
        .strip_prefix("whsec_")
        .and_then(|k| STANDARD.decode(k).ok())
        .filter(|k| !k.is_empty())
        .ok_or(WebhookError::BadSecret)?;
    let sent: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| WebhookError::BadTimestamp)?;
    if sent.abs_diff(now) > tolerance.as_secs() {
        return Err(WebhookError::Stale);
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("HMAC takes a key of any length");
    mac.update(format!("{id}.{}.", timestamp.trim()).as_bytes());
    mac.update(body);
    let matches = signature
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| STANDARD.decode(s).ok())
        // `verify_slice` compares in constant time.
        .any(|candidate| mac.clone().verify_slice(&candidate).is_ok());
    if !matches {
        return Err(WebhookError::NoMatchingSignature);
    }
    let event: Event =
        serde_json::from_slice(body).map_err(|e| WebhookError::BadBody(e.to_string()))?;
    if event.event_id != id {
        return Err(WebhookError::BadBody(
            "the body's eventId is not the webhook-id".into(),
        ));
    }
    Ok(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const ID: &str = "evt_4AbCdEfGhIjKlMnOpQrStUvW";
    const NOW: i64 = 1_800_000_000;

    fn body() -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "eventId": ID, "type": "session.paid", "createdAt": "2027-01-15T08:00:00Z",
            "livemode": false,
            "data": {"sessionId": "sess_4AbCdEfGhIjKlMnOpQrStUvW",
                     "previousStatus": "pending", "status": "paid"}
        }))
        .unwrap()
    }

    fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
        let key = STANDARD
            .decode(secret.strip_prefix("whsec_").unwrap())
            .unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(format!("{ID}.{timestamp}.").as_bytes());
        mac.update(body);
        format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
    }

    fn check(
        secret: &str,
        timestamp: i64,
        signature: &str,
        body: &[u8],
    ) -> Result<Event, WebhookError> {
        let tolerance = DEFAULT_TOLERANCE;
        verify_webhook_at(
            secret,
            ID,
            &timestamp.to_string(),
            signature,
            body,
            NOW,
            tolerance,
        )
    }

    #[test]
    fn a_signed_delivery_verifies_and_reads() {
        let event = check(
            SECRET,
            NOW - 10,
            &signature(SECRET, NOW - 10, &body()),
            &body(),
        )
        .unwrap();
        assert_eq!(event.event_id, ID);
        assert_eq!(event.kind, "session.paid");
    }

    #[test]
    fn one_matching_signature_among_several_is_enough() {
        let other = signature("whsec_c2VjcmV0LXJvdGF0ZWQtYXdheQ==", NOW, &body());
        let header = format!(
            "{other} v1,bm90IGEgc2lnbmF0dXJl {}",
            signature(SECRET, NOW, &body())
        );
        assert!(check(SECRET, NOW, &header, &body()).is_ok());
        assert_eq!(
            check(SECRET, NOW, &other, &body()),
            Err(WebhookError::NoMatchingSignature)
        );
    }

    #[test]
    fn any_change_is_refused() {
        let good = signature(SECRET, NOW, &body());
        let mut tampered = body();
        let at = tampered.iter().position(|&b| b == b'p').unwrap();
        tampered[at] = b'q';
        assert_eq!(
            check(SECRET, NOW, &good, &tampered),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            check(SECRET, NOW + 1, &good, &body()),
            Err(WebhookError::NoMatchingSignature)
        );
        let wrong_secret = "whsec_c2VjcmV0LXJvdGF0ZWQtYXdheQ==";
        assert_eq!(
            check(wrong_secret, NOW, &good, &body()),
            Err(WebhookError::NoMatchingSignature)
        );
        let unversioned = good.trim_start_matches("v1,");
        assert_eq!(
            check(SECRET, NOW, unversioned, &body()),
            Err(WebhookError::NoMatchingSignature)
        );
        assert_eq!(
            check("not-a-secret", NOW, &good, &body()),
            Err(WebhookError::BadSecret)
        );
    }

    #[test]
    fn old_and_future_timestamps_are_refused() {
        let old = NOW - 301;
        assert_eq!(
            check(SECRET, old, &signature(SECRET, old, &body()), &body()),
            Err(WebhookError::Stale)
        );
        let ahead = NOW + 301;
        assert_eq!(
            check(SECRET, ahead, &signature(SECRET, ahead, &body()), &body()),
            Err(WebhookError::Stale)
        );
        let edge = NOW - 300;
        assert!(check(SECRET, edge, &signature(SECRET, edge, &body()), &body()).is_ok());
        let bad = verify_webhook_at(
            SECRET,
            ID,
            "yesterday",
            "v1,x",
            &body(),
            NOW,
            DEFAULT_TOLERANCE,
        );
        assert_eq!(bad, Err(WebhookError::BadTimestamp));
    }

    #[test]
    fn a_body_of_another_event_is_refused() {
        let other = String::from_utf8(body())
            .unwrap()
            .replace(ID, "evt_5AbCdEfGhIjKlMnOpQrStUvW");
        let signed = signature(SECRET, NOW, other.as_bytes());
        assert!(matches!(
            check(SECRET, NOW, &signed, other.as_bytes()),
            Err(WebhookError::BadBody(_))
        ));
    }
}
