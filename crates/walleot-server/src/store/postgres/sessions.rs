//! Payment sessions and their events in PostgreSQL.

use super::{new_session_in, PostgresStore};
use crate::domain::payments::RefundRecord;
use crate::domain::ports::{
    CoveredPayment, IdempotencyCompletion, SessionPage, SessionStore, StoreError,
};
use crate::domain::sessions::{SessionEvent, SessionRecord};
use crate::store::rows::*;
use async_trait::async_trait;
use sqlx::Row;
use walleot_api::SessionStatus;

#[async_trait]
impl SessionStore for PostgresStore {
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
        let paid = match covered {
            // The usual creation: one statement.
            None => {
                super::retrying(|| {
                    super::insert_session_alone(&self.pool, session, created, completion)
                })
                .await?;
                None
            }
            Some(_) => {
                self.write(|tx| new_session_in(tx, session, created, completion, covered))
                    .await?
            }
        };
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
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE id = $1 AND merchant_id = $2 AND livemode = $3"
        ))
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&self.pool)
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
            "SELECT seq FROM sessions WHERE id = $1 AND merchant_id = $2 AND livemode = $3",
        )
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&self.pool)
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
        // $5 is the filter's value, bound only when the filter uses it: the instant
        // for pending and expired, the status otherwise.
        let (status_filter, at, named) = match status {
            None => ("TRUE", None, None),
            Some(SessionStatus::Pending) => {
                ("status = 'pending' AND expires_at > $5", Some(now_ms), None)
            }
            Some(SessionStatus::Expired) => (
                "(status = 'expired' OR (status = 'pending' AND expires_at <= $5))",
                Some(now_ms),
                None,
            ),
            Some(other) => ("status = $5", None, Some(other.as_str())),
        };
        let sql = format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE merchant_id = $1 AND livemode = $2 AND seq < $3 AND {status_filter} \
             ORDER BY seq DESC LIMIT $4"
        );
        let mut query = sqlx::query(&sql)
            .bind(merchant_id)
            .bind(livemode)
            .bind(before_seq.unwrap_or(i64::MAX))
            .bind(limit + 1);
        if let Some(at) = at {
            query = query.bind(at);
        }
        if let Some(named) = named {
            query = query.bind(named);
        }
        let rows = query.fetch_all(&self.pool).await?;
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
             JOIN merchants m ON m.id = s.merchant_id WHERE s.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
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
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
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
        // Every instance sweeps; each expiry is written by a plan guarded on the
        // session still pending, so the instance that comes second writes nothing.
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions \
             WHERE status = 'pending' AND expires_at <= $1 ORDER BY expires_at, id LIMIT $2"
        ))
        .bind(now_ms)
        .bind(batch)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_from_row)
        .collect()
    }

    async fn session_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_EVENT_COLUMNS} FROM session_events WHERE session_id = $1 ORDER BY seq"
        ))
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(session_event_from_row)
        .collect()
    }

    async fn refunds_of(&self, session_id: &str) -> Result<Vec<RefundRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {REFUND_COLUMNS} FROM refunds WHERE session_id = $1 ORDER BY seq"
        ))
        .bind(session_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(refund_from_row)
        .collect()
    }

    async fn payer_of(&self, session_id: &str) -> Result<Option<String>, StoreError> {
        Ok(
            sqlx::query_scalar("SELECT payer_id FROM approvals WHERE session_id = $1")
                .bind(session_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
