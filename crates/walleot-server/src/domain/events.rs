//! Events: what happened to a merchant's sessions and mandates, each recorded in the
//! transaction of the change it reports (`session_events`, `mandate_events`). They are
//! listed by `GET /v1/events` and posted to webhook endpoints, in one shape.

use super::clock::rfc3339;

/// An event of either record, with the owner of what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventRecord {
    pub id: String,
    pub kind: String,
    pub session_id: Option<String>,
    pub mandate_id: Option<String>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub created_at: i64,
    pub merchant_id: String,
    pub livemode: bool,
}

impl EventRecord {
    /// The event as the API writes it.
    pub fn to_wire(&self) -> walleot_api::Event {
        walleot_api::Event {
            event_id: self.id.clone(),
            kind: self.kind.clone(),
            created_at: rfc3339(self.created_at),
            livemode: self.livemode,
            data: walleot_api::EventData {
                session_id: self.session_id.clone(),
                mandate_id: self.mandate_id.clone(),
                previous_status: self.from_status.clone(),
                status: self.to_status.clone(),
            },
        }
    }
}

/// The two records events are kept in, each in its own order (`seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outbox {
    Sessions,
    Mandates,
}

impl Outbox {
    pub const ALL: [Outbox; 2] = [Outbox::Sessions, Outbox::Mandates];
}
