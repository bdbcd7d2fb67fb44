//! Idempotency keys in PostgreSQL: the kept answers, looked up without writing and
//! written with the change they answer. Two instances answering the same key at once
//! both insert; the second waits for the first's commit, finds its answer, and writes
//! nothing of its own change.

use super::PostgresStore;
use crate::domain::ports::{IdempotencyClaim, IdempotencyCompletion, IdempotencyStore, StoreError};
use crate::store::rows::*;
use async_trait::async_trait;
use sqlx::postgres::PgConnection;
use sqlx::Row;

#[async_trait]
impl IdempotencyStore for PostgresStore {
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
             FROM idempotency_keys WHERE scope = $1 AND key = $2",
        )
        .bind(scope)
        .bind(key)
        .fetch_optional(&self.pool)
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
        self.write(|mut tx| async move {
            complete_in(&mut tx, done).await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn purge_idempotency_keys(&self, cutoff_ms: i64) -> Result<u64, StoreError> {
        Ok(
            sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
                .bind(cutoff_ms)
                .execute(&self.pool)
                .await?
                .rows_affected(),
        )
    }
}

/// The statement that keeps an answer: over nothing, over a claim left running, or
/// over an answer older than the retention (`$n + 6`); an answer kept since the request
/// arrived stands, and the statement changes no row. Its values are numbered from `$n`
/// (see `super::bind_completion`).
pub(super) fn complete_sql(n: usize) -> String {
    let [scope, key, fingerprint, status, body, created, forget] =
        std::array::from_fn(|i| format!("${}", n + i));
    format!(
        "INSERT INTO idempotency_keys \
             (scope, key, fingerprint, response_status, response_body, created_at, locked_at) \
         VALUES ({scope}, {key}, {fingerprint}, {status}, {body}, {created}, {created}) \
         ON CONFLICT (scope, key) DO UPDATE SET \
             fingerprint = EXCLUDED.fingerprint, response_status = EXCLUDED.response_status, \
             response_body = EXCLUDED.response_body, created_at = EXCLUDED.created_at, \
             locked_at = EXCLUDED.locked_at \
         WHERE idempotency_keys.response_status IS NULL \
            OR idempotency_keys.created_at <= {forget}"
    )
}

static COMPLETE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| complete_sql(1));

/// Keeps an answer in the caller's transaction (see [`complete_sql`]); when one kept
/// meanwhile stands, the change this answer goes with must not be written.
pub(super) async fn complete_in(
    db: &mut PgConnection,
    done: &IdempotencyCompletion,
) -> Result<(), StoreError> {
    let written = super::bind_completion(sqlx::query(&COMPLETE), done)
        .execute(db)
        .await?
        .rows_affected();
    if written == 0 {
        return Err(StoreError::AnsweredMeanwhile);
    }
    Ok(())
}
