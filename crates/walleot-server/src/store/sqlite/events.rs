//! Events of sessions and mandates in SQLite, read as one list.

use super::SqliteStore;
use crate::domain::events::{EventRecord, Outbox};
use crate::domain::ports::{EventPosition, EventStore, OutboxEvent, StoreError};
use crate::store::rows::event_sql as sql;
use crate::store::rows::*;
use async_trait::async_trait;
use sqlx::Row;

sqlite!(SESSIONS_AFTER = *sql::SESSIONS_AFTER);
sqlite!(MANDATES_AFTER = *sql::MANDATES_AFTER);
sqlite!(FIND = *sql::FIND);
sqlite!(POSITION = *sql::POSITION);
sqlite!(LIST = *sql::LIST);

#[async_trait]
impl EventStore for SqliteStore {
    async fn event_position(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<EventPosition>, StoreError> {
        let row = sqlx::query(&POSITION)
            .bind(merchant_id)
            .bind(livemode)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1), r.get(2))))
    }

    async fn list_events(
        &self,
        merchant_id: &str,
        livemode: bool,
        before: Option<EventPosition>,
        limit: i64,
    ) -> Result<(Vec<EventRecord>, bool), StoreError> {
        let [session_at, session_seq, mandate_at, mandate_seq] = sql::bounds(before);
        let rows = sqlx::query(&LIST)
            .bind(merchant_id)
            .bind(livemode)
            .bind(session_at)
            .bind(session_seq)
            .bind(mandate_at)
            .bind(mandate_seq)
            .bind(limit + 1)
            .fetch_all(&self.reader)
            .await?;
        page(rows.iter().map(event_record_from_row), limit)
    }

    async fn outbox_after(
        &self,
        outbox: Outbox,
        seq: i64,
        limit: i64,
    ) -> Result<Vec<OutboxEvent>, StoreError> {
        let query = match outbox {
            Outbox::Sessions => &SESSIONS_AFTER,
            Outbox::Mandates => &MANDATES_AFTER,
        };
        sqlx::query(query)
            .bind(seq)
            .bind(limit)
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(outbox_event_from_row)
            .collect()
    }

    async fn find_event(&self, id: &str) -> Result<Option<EventRecord>, StoreError> {
        sqlx::query(&FIND)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(event_record_from_row)
            .transpose()
    }
}
