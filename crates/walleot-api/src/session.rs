use crate::Currency;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// The state of a payment session. A session starts `pending` and moves once to one of
/// the four final states.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase", parse_err_ty = UnknownStatus, parse_err_fn = UnknownStatus::of)]
pub enum SessionStatus {
    Pending,
    Paid,
    Failed,
    Expired,
    Cancelled,
}

impl SessionStatus {
    pub const ALL: [SessionStatus; 5] = [
        SessionStatus::Pending,
        SessionStatus::Paid,
        SessionStatus::Failed,
        SessionStatus::Expired,
        SessionStatus::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        self.into()
    }

    /// Whether the session can still change.
    pub fn is_final(self) -> bool {
        self != SessionStatus::Pending
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownStatus(pub String);

impl UnknownStatus {
    fn of(raw: &str) -> Self {
        UnknownStatus(raw.to_string())
    }
}

impl fmt::Display for UnknownStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "unknown status `{}`; expected one of pending, paid, failed, expired, cancelled",
            self.0
        )
    }
}

impl std::error::Error for UnknownStatus {}

/// When the payer's money moves to the merchant. `automatic`: paid and credited at
/// approval. `manual`: held at approval; capture or release later.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Default,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum CaptureMethod {
    /// At approval: the session is paid and the merchant credited at once.
    #[default]
    Automatic,
    /// At approval the payer's funds are held; the merchant captures them (for example
    /// after the paid tool succeeded) or releases them (after it failed).
    Manual,
}

/// Where the held funds of a manual-capture session stand. Manual capture only, once
/// approved: `held` (reads `paid`), then `captured` (reads `paid`) or `released` (reads
/// `cancelled`, or `expired` when the hold lapsed).
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum CaptureStatus {
    /// Approved and reserved; the session reads `paid`.
    Held,
    /// Moved to the merchant; the session reads `paid`.
    Captured,
    /// Returned to the payer; the session reads `cancelled` (released by the merchant)
    /// or `expired` (the hold lapsed uncaptured).
    Released,
}

impl CaptureMethod {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl CaptureStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// `POST /v1/sessions`. Unknown fields are refused so that a typo never goes unnoticed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateSessionRequest {
    /// Amount in the currency's minor unit: 200 is 2.00 USD; JPY has no minor unit. A
    /// number with a zero fraction (`200.0`) counts as the integer it is. The maximum is
    /// configurable.
    #[serde(deserialize_with = "whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 99_999_999))]
    pub amount: i64,
    /// ISO 4217 code of a currency with a minor unit, in any case; stored and answered
    /// lower case.
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = crate::openapi::currency_in_any_case)
    )]
    pub currency: String,
    /// What the payer is paying for; shown at checkout. Plain visible text: newlines are
    /// allowed, but not other control characters, nor invisible formatting characters
    /// (Unicode category Cf: bidirectional overrides, embeddings, isolates and marks,
    /// zero-width spaces, word joiners, soft hyphens, tags…) nor line and paragraph
    /// separators, so that the checkout shows the text exactly as it reads. A zero-width
    /// joiner or non-joiner (U+200D, U+200C) is also accepted between two visible
    /// characters, as emoji sequences and some scripts need; the pattern leaves it out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(
            max_length = 1000,
            pattern = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u180E\u200B-\u200F\u2028-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]*$"
        )
    )]
    pub description: Option<String>,
    /// Seconds until the session expires (default 86400, configurable). A number with a
    /// zero fraction counts as the integer it is.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 604_800))]
    pub expires_in: Option<i64>,
    /// `automatic` (the default) or `manual`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub capture_method: Option<CaptureMethod>,
    /// The merchant's own labels, answered on every read: at most 50 keys of 1 to 40
    /// letters, digits, `_`, `-` or `.`, each with a string of at most 500 characters of
    /// plain visible text (as `description`). The SDKs record the paid tool and the hash
    /// of its arguments here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(schema_with = crate::openapi::metadata_request)
    )]
    pub metadata: Option<BTreeMap<String, String>>,
    /// The merchant's stable reference for the user or agent paying: 1 to 255 printable
    /// characters. When the payer has granted this merchant a mandate for this customer
    /// (in the key's mode and the session's currency) that covers the amount, the
    /// session is paid at creation and names the mandate; otherwise it is pending as
    /// usual, and its checkout offers the payer a mandate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "openapi",
        schema(min_length = 1, max_length = 255, pattern = r"^[\x20-\x7E]+$")
    )]
    pub customer: Option<String>,
}

/// A whole number, written as JSON Schema counts integers: `7290` and `7290.0` alike,
/// while `7290.5`, `"7290"` and numbers beyond 64 bits are refused.
pub(crate) fn whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<i64, D::Error> {
    deserializer.deserialize_any(WholeNumber)
}

pub(crate) fn optional_whole_number<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<i64>, D::Error> {
    deserializer.deserialize_option(OptionalWholeNumber)
}

struct WholeNumber;

impl serde::de::Visitor<'_> for WholeNumber {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number")
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<i64, E> {
        Ok(v)
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<i64, E> {
        i64::try_from(v).map_err(|_| E::custom(format!("{v} is too large")))
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<i64, E> {
        // 2^63 is exact as an f64; everything below it in magnitude fits an i64.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        if v.fract() == 0.0 && v > -LIMIT && v < LIMIT {
            Ok(v as i64)
        } else if v.fract() != 0.0 {
            Err(E::custom(format!("{v} is not a whole number")))
        } else {
            Err(E::custom(format!("{v} is too large")))
        }
    }
}

struct OptionalWholeNumber;

impl<'de> serde::de::Visitor<'de> for OptionalWholeNumber {
    type Value = Option<i64>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a whole number or null")
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        whole_number(d).map(Some)
    }
}

/// The answer to `POST /v1/sessions`. The reference names `sessionId` and `url`; the
/// rest of the session follows.
pub type CreateSessionResponse = Session;

/// A payment session as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Session {
    #[cfg_attr(feature = "openapi", schema(examples("sess_4AbCdEfGhIjKlMnOpQrStUvW")))]
    pub session_id: String,
    /// The checkout page to send the payer to.
    #[cfg_attr(feature = "openapi", schema(format = "uri"))]
    pub url: String,
    pub status: SessionStatus,
    pub amount: i64,
    pub currency: Currency,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub description: Option<String>,
    /// RFC 3339, UTC.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// RFC 3339, UTC. A pending session reads `expired` from this instant on.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub expires_at: String,
    pub livemode: bool,
    pub capture_method: CaptureMethod,
    /// For manual capture, once approved: `held`, then `captured` or `released`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub capture_status: Option<CaptureStatus>,
    /// The metadata given at creation; empty when none was.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// The customer reference given at creation, if any.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub customer: Option<String>,
    /// The mandate the session was paid under, without a click; null otherwise.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub mandate_id: Option<String>,
    /// What moved to the merchant: the amount once paid under automatic capture, what
    /// was captured under manual capture (a metered capture takes less); null before.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(required = true, minimum = 1))]
    pub amount_captured: Option<i64>,
    /// What went back to the payer in refunds, at most `amountCaptured`.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub amount_refunded: i64,
}

/// A page of `GET /v1/sessions`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionList {
    pub data: Vec<Session>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_round_trip_through_their_names() {
        for status in SessionStatus::ALL {
            assert_eq!(status.as_str().parse::<SessionStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_string(&status).unwrap(),
                format!("\"{}\"", status.as_str())
            );
        }
        assert!("PAID".parse::<SessionStatus>().is_err());
    }

    #[test]
    fn integral_numbers_count_as_integers_and_fractions_do_not() {
        let parse = |body: &str| serde_json::from_str::<CreateSessionRequest>(body);
        let ok = parse(r#"{"amount":7290.0,"currency":"usd","expiresIn":600.0}"#).unwrap();
        assert_eq!((ok.amount, ok.expires_in), (7290, Some(600)));
        assert_eq!(
            parse(r#"{"amount":1e3,"currency":"usd"}"#).unwrap().amount,
            1000
        );
        assert_eq!(
            parse(r#"{"amount":5,"currency":"usd","expiresIn":null}"#)
                .unwrap()
                .expires_in,
            None
        );
        for bad in [
            r#"{"amount":7290.5,"currency":"usd"}"#,
            r#"{"amount":"7290","currency":"usd"}"#,
            r#"{"amount":1e19,"currency":"usd"}"#,
            r#"{"amount":18446744073709551615,"currency":"usd"}"#,
            r#"{"amount":true,"currency":"usd"}"#,
            r#"{"amount":5,"currency":"usd","expiresIn":60.25}"#,
        ] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_reference_request_parses_and_typos_do_not() {
        let ok: CreateSessionRequest = serde_json::from_str(
            r#"{"amount":200,"currency":"usd","description":"Pro feature unlock"}"#,
        )
        .unwrap();
        assert_eq!(ok.amount, 200);
        assert!(serde_json::from_str::<CreateSessionRequest>(
            r#"{"amount":200,"currency":"usd","descripton":"x"}"#
        )
        .is_err());
    }
}

/// An amount of minor units in a currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Money {
    pub amount: i64,
    pub currency: Currency,
}

/// `GET /v1/balance`: what the merchant has earned, per currency, in the key's mode.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Balance {
    /// Paid to the merchant.
    pub available: Vec<Money>,
    /// Held for the merchant, not yet captured.
    pub pending: Vec<Money>,
    pub livemode: bool,
}
