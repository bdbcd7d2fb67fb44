//! Payment sessions and their events in SQLite; new sessions go through the group
//! committer.

use super::SqliteStore;
use super::*;
use crate::domain::ports::{SessionPage, SessionStore, Transition};
use async_trait::async_trait;

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
    ) -> Result<(), StoreError> {
        self.group_write(|done| WriteJob::NewSession {
            session: session.clone(),
            created: created.clone(),
            completion: completion.cloned(),
            done,
        })
        .await
    }

    async fn get_session(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ? AND merchant_id = ? AND livemode = ?"
        ))
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

    async fn transition(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        to: SessionStatus,
        now_ms: i64,
    ) -> Result<Transition, StoreError> {
        if matches!(to, SessionStatus::Pending | SessionStatus::Paid) {
            // A session is paid only through the ledger (`pay_session`).
            return Err(StoreError::Corrupt(format!(
                "no transition to {to} outside the ledger"
            )));
        }
        let mut tx = self.write().await?;
        let updated = sqlx::query(&format!(
            "UPDATE sessions SET status = ?1, updated_at = ?2, \
                 expires_at = CASE WHEN ?1 = 'expired' THEN MIN(expires_at, ?2) ELSE expires_at END \
             WHERE id = ?3 AND merchant_id = ?4 AND livemode = ?5 AND status = 'pending' \
               AND (?1 = 'expired' OR expires_at > ?2) \
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(to.as_str())
        .bind(now_ms)
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match updated {
            Some(row) => {
                let session = session_from_row(&row)?;
                let event = SessionEvent::new(id, Some(SessionStatus::Pending), to, now_ms);
                insert_event(&mut tx, &event).await?;
                Transition::Applied(session)
            }
            None => match sqlx::query(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ? AND merchant_id = ? AND livemode = ?"
            ))
            .bind(id)
            .bind(merchant_id)
            .bind(livemode)
            .fetch_optional(&mut *tx)
            .await?
            {
                Some(row) => Transition::Refused(session_from_row(&row)?),
                None => Transition::NotFound,
            },
        };
        tx.commit().await?;
        if let Transition::Applied(session) = &outcome {
            self.changed(&session.id);
        }
        Ok(outcome)
    }

    async fn settle_hold(
        &self,
        merchant_id: &str,
        livemode: bool,
        id: &str,
        capture: bool,
        now_ms: i64,
    ) -> Result<Transition, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "SELECT {SESSION_COLUMNS}, hold_transfer_id FROM sessions \
             WHERE id = ? AND merchant_id = ? AND livemode = ?"
        ))
        .bind(id)
        .bind(merchant_id)
        .bind(livemode)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(Transition::NotFound);
        };
        let session = session_from_row(&row)?;
        let hold: Option<String> = row.try_get("hold_transfer_id")?;
        let (Some(hold), Some(CaptureStatus::Held)) = (hold, session.capture_status) else {
            return Ok(Transition::Refused(session));
        };
        // Past its deadline a hold is lapsed, whether or not the sweeper came by yet.
        let lapses_at: Option<Option<i64>> = sqlx::query_scalar(
            "SELECT lapses_at FROM transfers WHERE id = ? AND state = 'pending'",
        )
        .bind(&hold)
        .fetch_optional(&mut *tx)
        .await?;
        if matches!(lapses_at, Some(Some(deadline)) if deadline <= now_ms) {
            ledger::lapse_in(&mut tx, &hold, now_ms).await?;
            let row = sqlx::query(&format!(
                "SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?"
            ))
            .bind(id)
            .fetch_one(&mut *tx)
            .await?;
            tx.commit().await?;
            self.changed(id);
            return Ok(Transition::Refused(session_from_row(&row)?));
        }
        let to = if capture {
            TransferState::Posted
        } else {
            TransferState::Voided
        };
        match ledger::resolve_in(&mut tx, &hold, to, now_ms).await {
            Ok(_) => {}
            // The hold lapsed a moment ago: nothing is held any more.
            Err(StoreError::Ledger(LedgerError::NotPending)) => {
                return Ok(Transition::Refused(session))
            }
            Err(e) => return Err(e),
        }
        let (status, kind) = if capture {
            (SessionStatus::Paid, "session.captured")
        } else {
            (SessionStatus::Cancelled, "session.released")
        };
        let updated = sqlx::query(&format!(
            "UPDATE sessions SET status = ?, capture_status = ?, updated_at = ? WHERE id = ? \
             RETURNING {SESSION_COLUMNS}"
        ))
        .bind(status.as_str())
        .bind(if capture { "captured" } else { "released" })
        .bind(now_ms)
        .bind(id)
        .fetch_one(&mut *tx)
        .await?;
        let event = SessionEvent::named(id, kind, Some(SessionStatus::Paid), status, now_ms);
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        self.changed(id);
        Ok(Transition::Applied(session_from_row(&updated)?))
    }

    async fn expire_due(&self, now_ms: i64, batch: i64) -> Result<usize, StoreError> {
        let mut tx = self.write().await?;
        let ids: Vec<String> = sqlx::query_scalar(
            "UPDATE sessions SET status = 'expired', updated_at = ?1 \
             WHERE seq IN (SELECT seq FROM sessions \
                           WHERE status = 'pending' AND expires_at <= ?1 LIMIT ?2) \
             RETURNING id",
        )
        .bind(now_ms)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?;
        for id in &ids {
            let event = SessionEvent::new(
                id,
                Some(SessionStatus::Pending),
                SessionStatus::Expired,
                now_ms,
            );
            insert_event(&mut tx, &event).await?;
        }
        tx.commit().await?;
        for id in &ids {
            self.changed(id);
        }
        Ok(ids.len())
    }

    async fn session_for_checkout(
        &self,
        id: &str,
    ) -> Result<Option<(SessionRecord, String)>, StoreError> {
        let columns = SESSION_COLUMNS
            .split(", ")
            .map(|c| format!("s.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ");
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

    async fn session_events(&self, session_id: &str) -> Result<Vec<SessionEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, session_id, type, from_status, to_status, created_at \
             FROM session_events WHERE session_id = ? ORDER BY seq",
        )
        .bind(session_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let from: Option<String> = row.try_get("from_status")?;
                let to: String = row.try_get("to_status")?;
                Ok(SessionEvent {
                    id: row.try_get("id")?,
                    session_id: row.try_get("session_id")?,
                    kind: row.try_get("type")?,
                    from_status: from.map(|s| s.parse()).transpose().map_err(corrupt)?,
                    to_status: to.parse().map_err(corrupt)?,
                    created_at: row.try_get("created_at")?,
                })
            })
            .collect()
    }
}
