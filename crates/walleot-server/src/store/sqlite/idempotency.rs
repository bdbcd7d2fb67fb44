//! Idempotency keys in SQLite: a claim per key, then the kept answer.

use super::SqliteStore;
use super::{complete_in, corrupt};
use crate::domain::ports::{IdempotencyClaim, IdempotencyCompletion, IdempotencyStore, StoreError};
use async_trait::async_trait;
use sqlx::Row;

#[async_trait]
impl IdempotencyStore for SqliteStore {
    async fn claim_idempotency_key(
        &self,
        scope: &str,
        key: &str,
        fingerprint: &str,
        now_ms: i64,
        stale_ms: i64,
        retain_ms: i64,
    ) -> Result<IdempotencyClaim, StoreError> {
        let mut tx = self.write().await?;
        let existing = sqlx::query(
            "SELECT fingerprint, response_status, response_body, created_at, locked_at \
             FROM idempotency_keys WHERE scope = ? AND key = ?",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?;
        let claim = match existing {
            Some(row) if row.try_get::<i64, _>("created_at")? > now_ms - retain_ms => {
                let status: Option<i64> = row.try_get("response_status")?;
                if row.try_get::<String, _>("fingerprint")? != fingerprint {
                    IdempotencyClaim::Mismatch
                } else if let Some(status) = status {
                    IdempotencyClaim::Replay {
                        status: u16::try_from(status).map_err(corrupt)?,
                        body: row.try_get("response_body")?,
                    }
                } else if row.try_get::<i64, _>("locked_at")? > now_ms - stale_ms {
                    IdempotencyClaim::InProgress
                } else {
                    sqlx::query(
                        "UPDATE idempotency_keys SET locked_at = ? WHERE scope = ? AND key = ?",
                    )
                    .bind(now_ms)
                    .bind(scope)
                    .bind(key)
                    .execute(&mut *tx)
                    .await?;
                    IdempotencyClaim::Acquired
                }
            }
            _ => {
                sqlx::query(
                    "INSERT OR REPLACE INTO idempotency_keys \
                         (scope, key, fingerprint, response_status, response_body, created_at, locked_at) \
                     VALUES (?, ?, ?, NULL, NULL, ?, ?)",
                )
                .bind(scope)
                .bind(key)
                .bind(fingerprint)
                .bind(now_ms)
                .bind(now_ms)
                .execute(&mut *tx)
                .await?;
                IdempotencyClaim::Acquired
            }
        };
        tx.commit().await?;
        Ok(claim)
    }

    async fn complete_idempotency_key(
        &self,
        done: &IdempotencyCompletion,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        complete_in(&mut tx, done).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn release_idempotency_key(&self, scope: &str, key: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "DELETE FROM idempotency_keys WHERE scope = ? AND key = ? AND response_status IS NULL",
        )
        .bind(scope)
        .bind(key)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn purge_idempotency_keys(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?")
            .bind(cutoff_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done.rows_affected())
    }
}
