use serde::{Deserialize, Serialize};

/// What happened, as events and webhook endpoints name it.
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
    strum::EnumIter,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum EventType {
    #[serde(rename = "session.created")]
    #[strum(serialize = "session.created")]
    SessionCreated,
    #[serde(rename = "session.paid")]
    #[strum(serialize = "session.paid")]
    SessionPaid,
    #[serde(rename = "session.failed")]
    #[strum(serialize = "session.failed")]
    SessionFailed,
    #[serde(rename = "session.expired")]
    #[strum(serialize = "session.expired")]
    SessionExpired,
    #[serde(rename = "session.cancelled")]
    #[strum(serialize = "session.cancelled")]
    SessionCancelled,
    #[serde(rename = "session.captured")]
    #[strum(serialize = "session.captured")]
    SessionCaptured,
    #[serde(rename = "session.released")]
    #[strum(serialize = "session.released")]
    SessionReleased,
    #[serde(rename = "session.refunded")]
    #[strum(serialize = "session.refunded")]
    SessionRefunded,
    #[serde(rename = "mandate.granted")]
    #[strum(serialize = "mandate.granted")]
    MandateGranted,
    #[serde(rename = "mandate.revoked")]
    #[strum(serialize = "mandate.revoked")]
    MandateRevoked,
    #[serde(rename = "mandate.expired")]
    #[strum(serialize = "mandate.expired")]
    MandateExpired,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// `POST /v1/webhook_endpoints`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CreateWebhookEndpointRequest {
    /// Where events are posted: `https://…`; test mode also takes `http://`, and
    /// addresses on this machine or a private network.
    #[cfg_attr(
        feature = "openapi",
        schema(
            min_length = 1,
            max_length = 2048,
            pattern = r#"^https?://(?:[A-Za-z](?:[A-Za-z0-9.-]*[A-Za-z])?|(?:(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])\.){3}(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9]))(?::[0-9]{1,4})?(?:/[!"$-~]*)?$"#,
            examples("https://example.com/walleot")
        )
    )]
    pub url: String,
    /// Only these types of event; every type when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 11))]
    pub events: Option<Vec<EventType>>,
}

/// Whether an endpoint is sent events.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    strum::IntoStaticStr,
    strum::EnumString,
    strum::Display,
)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
#[strum(serialize_all = "lowercase")]
pub enum WebhookEndpointStatus {
    Enabled,
    /// Deliveries failed for days; `disabledReason` says why. Events go on being
    /// recorded and are sent once the endpoint is enabled again.
    Disabled,
    /// Removed; nothing more is sent to it.
    Deleted,
}

/// A URL that the merchant's events are posted to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpoint {
    #[cfg_attr(feature = "openapi", schema(examples("we_4AbCdEfGhIjKlMnOpQrStUvW")))]
    pub endpoint_id: String,
    pub url: String,
    /// The types sent to it; null for every type.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub events: Option<Vec<EventType>>,
    pub status: WebhookEndpointStatus,
    /// Why it was disabled; null while enabled.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub disabled_reason: Option<String>,
    pub livemode: bool,
    /// RFC 3339, UTC.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    /// The signing secret (`whsec_…`), in the answer of the creation only: keep it then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

/// `GET /v1/webhook_endpoints`: the endpoints of the key's merchant and mode, oldest
/// first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WebhookEndpointList {
    pub data: Vec<WebhookEndpoint>,
}

/// `POST /v1/events/{eventId}/redeliver`: the endpoints the event is sent to again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Redelivery {
    pub event_id: String,
    pub endpoint_ids: Vec<String>,
}

/// Header names of a webhook delivery (the Standard Webhooks scheme).
pub mod webhook_headers {
    /// The event's id: the same on every attempt, so that a receiver can drop repeats.
    pub const ID: &str = "webhook-id";
    /// Seconds since the Unix epoch when the attempt was signed.
    pub const TIMESTAMP: &str = "webhook-timestamp";
    /// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`; several, space-separated,
    /// may come.
    pub const SIGNATURE: &str = "webhook-signature";
}
