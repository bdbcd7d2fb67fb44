//! Idempotency keys in SQLite: the kept answers, looked up without writing and written
//! with the change they answer (or on their own, by the writer).

use super::{corrupt, SqliteStore};
use crate::domain::ports::{IdempotencyClaim, IdempotencyCompletion, IdempotencyStore, StoreError};
use async_trait::async_trait;
use rusqlite::{params, Connection};
use sqlx::Row;

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn look_up_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        stale_ms: i64,
        retain_ms: i64,
    ) -> Result<IdempotencyClaim, StoreError> {
        let existing = sqlx::query(
            "SELECT fingerprint, response_status, response_body, created_at, locked_at \
             FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.reader)
        .await?;
        let Some(row) = existing else {
            return Ok(IdempotencyClaim::Acquired);
        };
        if row.try_get::<i64, _>("created_at")? <= now_ms - retain_ms {
            return Ok(IdempotencyClaim::Acquired);
        }
        let status: Option<i64> = row.try_get("response_status")?;
        Ok(if row.try_get::<String, _>("fingerprint")? != fingerprint {
            IdempotencyClaim::Mismatch
        } else if let Some(status) = status {
            IdempotencyClaim::Replay {
                status: u16::try_from(status).map_err(corrupt)?,
                body: row.try_get("response_body")?,
            }
        } else if row.try_get::<i64, _>("locked_at")? > now_ms - stale_ms {
            IdempotencyClaim::InProgress
        } else {
            IdempotencyClaim::Acquired
        })
    }

    async fn complete_idempotency_key(
        &self,
        done: &IdempotencyCompletion,
    ) -> Result<(), StoreError> {
        let done = done.clone();
        self.writer.run(move |db| complete_in(db, &done)).await
    }

    async fn purge_idempotency_keys(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        self.writer
            .run(move |db| {
                let purged = db
                    .prepare_cached("DELETE FROM idempotency_keys WHERE created_at < ?")?
                    .execute([cutoff_ms])?;
                Ok(purged as u64)
            })
            .await
    }
}

/// Keeps an answer in the writer's transaction: over nothing, over a claim left
/// running, or over an answer older than the retention; an answer kept since the
/// request arrived stands, and the change this answer goes with must not be written.
pub(super) fn complete_in(db: &Connection, done: &IdempotencyCompletion) -> Result<(), StoreError> {
    let written = db
        .prepare_cached(
            "INSERT INTO idempotency_keys \
             (scope, key, fingerprint, response_status, response_body, created_at, locked_at) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6) \
         ON CONFLICT (scope, key) DO UPDATE SET \
             fingerprint = excluded.fingerprint, response_status = excluded.response_status, \
             response_body = excluded.response_body, created_at = excluded.created_at, \
             locked_at = excluded.locked_at \
         WHERE idempotency_keys.response_status IS NULL OR idempotency_keys.created_at <= ?7",
        )?
        .execute(params![
            done.scope,
            done.key,
            done.fingerprint,
            i64::from(done.status),
            done.body,
            done.created_at,
            done.forget_before,
        ])?;
    if written == 0 {
        return Err(StoreError::AnsweredMeanwhile);
    }
    Ok(())
}
