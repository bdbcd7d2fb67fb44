use crate::session::{optional_whole_number, whole_number};
use crate::Currency;
use serde::{Deserialize, Serialize};

/// Where a mandate stands. `active` until the payer revokes it (`revoked`) or its
/// `expiresAt` passes (`expired`); neither can be undone.
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
#[strum(serialize_all = "lowercase")]
pub enum MandateStatus {
    Active,
    Revoked,
    Expired,
}

impl MandateStatus {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// The span a mandate's period limit counts over, in UTC calendar terms: a day from
/// midnight, a week from Monday midnight, a month from the first at midnight.
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
#[strum(serialize_all = "lowercase")]
pub enum MandatePeriod {
    Day,
    Week,
    Month,
}

impl MandatePeriod {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// A payer's standing permission for a merchant to charge one customer reference
/// without asking, within limits. Amounts are in the currency's minor unit; a limit
/// that is null does not apply. What is spent counts payments held or captured under
/// the mandate; released and lapsed holds do not count.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Mandate {
    #[cfg_attr(feature = "openapi", schema(examples("mdt_4AbCdEfGhIjKlMnOpQrStUvW")))]
    pub mandate_id: String,
    pub status: MandateStatus,
    /// The merchant's customer reference the mandate covers.
    pub customer: String,
    pub currency: Currency,
    pub livemode: bool,
    /// Most one payment may be.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub per_call_limit: Option<i64>,
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub period: Option<MandatePeriod>,
    /// Most the payments of one period may add up to.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub period_limit: Option<i64>,
    /// Most all payments under the mandate may add up to.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub total_limit: Option<i64>,
    /// Spent in the current period (0 without a period limit).
    pub spent_in_period: i64,
    pub spent_total: i64,
    /// What may still be spent now: the least of the period's and the total's
    /// remainders; null when neither limit applies. 0 once the mandate is not active.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub remaining: Option<i64>,
    /// RFC 3339, UTC: when the current period ends and its budget starts afresh.
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, format = DateTime)
    )]
    pub period_ends_at: Option<String>,
    /// RFC 3339, UTC.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// RFC 3339, UTC. The mandate reads `expired` from this instant on.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub expires_at: String,
    /// RFC 3339, UTC; null unless revoked.
    #[cfg_attr(
        feature = "openapi",
        schema(required = true, format = DateTime)
    )]
    pub revoked_at: Option<String>,
}

/// A page of `GET /v1/mandates`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct MandateList {
    pub data: Vec<Mandate>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}

/// `POST /v1/test_helpers/sessions/{sessionId}/grant_mandate`: the terms the sandbox payer
/// grants, as a payer does on a paid checkout. Amounts in minor units. Without any
/// limit, the per-call limit is the paid session's amount.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct TestMandateRequest {
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub per_call_limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period_limit: Option<PeriodLimit>,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub total_limit: Option<i64>,
    /// Seconds until the mandate expires: 60 to 31,622,400 (a year); 30 days by default.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "optional_whole_number"
    )]
    #[cfg_attr(feature = "openapi", schema(minimum = 60, maximum = 31_622_400))]
    pub expires_in: Option<i64>,
}

/// At most `amount` per `per` (a UTC calendar day, week or month).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PeriodLimit {
    #[serde(deserialize_with = "whole_number")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub amount: i64,
    pub per: MandatePeriod,
}
