use serde::{Deserialize, Serialize};

/// Something that happened to one of the merchant's sessions or mandates, recorded in
/// the same transaction as the change: a thin event, naming the session (or mandate) and
/// its status change; read it for the rest. `type` is `session.created`,
/// `session.paid`, `session.failed`, `session.expired`, `session.cancelled`,
/// `session.captured`, `session.released`, `session.refunded`, `mandate.granted`,
/// `mandate.revoked` or `mandate.expired`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Event {
    #[cfg_attr(feature = "openapi", schema(examples("evt_4AbCdEfGhIjKlMnOpQrStUvW")))]
    pub event_id: String,
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(examples("session.paid")))]
    pub kind: String,
    /// RFC 3339, UTC.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created_at: String,
    pub livemode: bool,
    pub data: EventData,
}

/// What an event is about, and its status before and after: `sessionId` for the
/// `session.*` events (statuses of a session), `mandateId` for the `mandate.*` events
/// (`active`, `revoked`, `expired`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventData {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mandate_id: Option<String>,
    /// Null for `session.created` and `mandate.granted`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub previous_status: Option<String>,
    pub status: String,
}

/// A page of `GET /v1/events`, newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct EventList {
    pub data: Vec<Event>,
    pub has_more: bool,
    /// Pass as `cursor` for the next page; null on the last page.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_cursor: Option<String>,
}
