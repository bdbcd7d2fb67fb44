//! Payment sessions and their events in SQLite.

use super::SqliteStore;
use super::*;
use crate::domain::payments::RefundRecord;
use crate::domain::ports::{CoveredPayment, SessionPage, SessionStore};
use crate::store::rows::*;
use async_trait::async_trait;
use std::sync::LazyLock;

/// A session by its id; of a merchant and mode.
static SESSION_BY_ID: LazyLock<String> =
    LazyLock::new(|| format!("SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"));
static SESSION_OF_MERCHANT: LazyLock<String> = LazyLock::new(|| {
    format!(
        "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ? AND merchant_id = ? AND livemode = ?"
    )
});

#[async_trait]
impl SessionStore for SqliteStore {
    fn session_changes(&self) -> tokio::sync::broadcast::Receiver<String> {
        self.changes.subscribe()
    }

    async fn insert_session(
        &self,
        session: &SessionRecord,
        created: &SessionEvent,
        completion: Option<&IdempotencyCompletion>,
        covered: Option<&CoveredPayment>,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let (session, created) = (session.clone(), created.clone());
        let (completion, covered) = (completion.cloned(), covered.cloned());
        let paid = self
            .writer
            .run(move |db| {
                new_session_in(
                    db,
                    &session,
                    &created,
                    completion.as_ref(),
                    covered.as_ref(),
                )
            })
            .await?;
        if let Some(paid) = &paid {
            self.changed(&paid.id);
        }
        Ok(paid)
    }

    async fn get_session(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        let sql = &*SESSION_OF_MERCHANT;
        let params = (id, merchant_id, livemode);
        if let Some(read) = self.read_now(|now| now.row(sql, params, |r| session_from_row(r))) {
            return read;
        }
        sqlx::query(sql)
            .bind(id)
            .bind(merchant_id)
            .bind(livemode)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn session_seq(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<i64>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT seq FROM sessions WHERE id = ? AND merchant_id = ? AND livemode = ?",
        )
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn list_sessions(
        &self,
        merchant_id: &str,
        livemode: bool,
        status: Option<SessionStatus>,
        before_seq: Option<i64>,
        now_ms: i64,
        limit: i64,
    ) -> Result<SessionPage, StoreError> {
        let status_filter = match status {
            None => "1 = 1",
            Some(SessionStatus::Pending) => "status = 'pending' AND expires_at > ?4",
            Some(SessionStatus::Expired) => {
                "(status = 'expired' OR (status = 'pending' AND expires_at <= ?4))"
            }
            Some(_) => "status = ?5",
        };
        let rows = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE merchant_id = ?1 AND livemode = ?2 AND seq < ?3 AND {status_filter} \
             ORDER BY seq DESC LIMIT ?6"
        ))
        .bind(merchant_id)
        .bind(livemode)
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(now_ms)
        .bind(status.map(|s| s.as_str()))
        .bind(limit + 1)
        .fetch_all(&self.reader)
        .await?;
        let mut sessions = rows
            .iter()
            .map(session_from_row)
            .collect::<Result<Vec<_>, _>>()?;
        let has_more = sessions.len() as i64 > limit;
        sessions.truncate(limit as usize);
        Ok(SessionPage { sessions, has_more })
    }

    async fn session_for_checkout(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRecord, String)>, StoreError> {
        let columns = &*SESSION_COLUMNS_S;
        let row = sqlx::query(&format!(
            "SELECT {columns}, m.name AS merchant_name FROM sessions s \
             JOIN merchants m ON m.id = s.merchant_id WHERE s.id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.reader)
        .await?;
        match row {
            Some(row) => Ok(Some((
                session_from_row(&row)?,
                row.try_get("merchant_name")?,
            ))),
            None => Ok(None),
        }
    }

    async fn find_session(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let sql = &*SESSION_BY_ID;
        if let Some(read) = self.read_now(|now| now.row(sql, [id], |r| session_from_row(r))) {
            return read;
        }
        sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(session_from_row)
            .transpose()
    }

    async fn due_sessions(
        &self,
        now_ms: i64,
        batch: i64,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE status = 'pending' AND expires_at <= ? LIMIT ?"
        ))
        .bind(now_ms)
        .bind(batch)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn session_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_EVENT_COLUMNS} FROM session_events WHERE session_id = ? ORDER BY seq"
        ))
        .bind(session_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(session_event_from_row)
        .collect()
    }

    async fn refunds_of(&self, session_id: &str) -> Result<Vec<RefundRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE session_id = ? ORDER BY seq"
        ))
        .bind(session_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(refund_from_row)
        .collect()
    }

    async fn payer_of(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT payer_id FROM approvals WHERE session_id = ?")
                .bind(session_id)
                .fetch_optional(&self.reader)
                .await?,
        )
    }
}
