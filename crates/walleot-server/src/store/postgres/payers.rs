//! Payers, their factors, logins and WebAuthn challenges in PostgreSQL.

use super::PostgresStore;
use crate::domain::payers::{Challenge, Passkey, Payer, TotpRecord};
use crate::domain::ports::{PayerStore, StoreError};
use crate::store::rows::*;
use async_trait::async_trait;
use sqlx::Row;
use walleot_api::Currency;

/// Approvals without a second factor of one payer for one merchant and mode since an
/// instant: the figure the hourly limit of such approvals is checked against.
pub(super) const AUTO_APPROVALS_SINCE: &str = "SELECT COUNT(*) FROM approvals a \
     JOIN sessions s ON s.id = a.session_id \
     WHERE a.payer_id = $1 AND a.method = 'auto' AND a.created_at > $2 \
     AND s.merchant_id = $3 AND s.livemode = $4";

#[async_trait]
impl PayerStore for PostgresStore {
    async fn insert_payer(&self, payer: &Payer) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query(
                "INSERT INTO payers (id, created_at, failed_attempts, locked_until) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(&payer.id)
            .bind(payer.created_at)
            .bind(payer.failed_attempts)
            .bind(payer.locked_until)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn get_payer(&self, id: &str) -> Result<Option<Payer>, StoreError> {
        sqlx::query(&format!("SELECT {PAYER_COLUMNS} FROM payers WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(payer_from_row)
            .transpose()
    }

    async fn note_failed_attempt(
        &self,
        payer_id: &str,
        now_ms: i64,
        max: i64,
        lock_ms: i64,
    ) -> Result<Payer, StoreError> {
        self.write(|mut tx| async move {
            let row = sqlx::query(&format!(
                "UPDATE payers SET \
                     locked_until = CASE WHEN failed_attempts + 1 >= $2 THEN $3::BIGINT + $4::BIGINT \
                                         ELSE locked_until END, \
                     failed_attempts = CASE WHEN failed_attempts + 1 >= $2 THEN 0 \
                                            ELSE failed_attempts + 1 END \
                 WHERE id = $1 RETURNING {PAYER_COLUMNS}"
            ))
            .bind(payer_id)
            .bind(max)
            .bind(now_ms)
            .bind(lock_ms)
            .fetch_one(&mut *tx)
            .await?;
            let payer = payer_from_row(&row)?;
            Ok((tx, payer))
        })
        .await
    }

    async fn clear_failed_attempts(&self, payer_id: &str) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query(
                "UPDATE payers SET failed_attempts = 0 WHERE id = $1 AND failed_attempts <> 0",
            )
            .bind(payer_id)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn auto_approvals_since(
        &self,
        payer_id: &str,
        merchant_id: &str,
        livemode: bool,
        since_ms: i64,
    ) -> Result<i64, StoreError> {
        Ok(sqlx::query_scalar(AUTO_APPROVALS_SINCE)
            .bind(payer_id)
            .bind(since_ms)
            .bind(merchant_id)
            .bind(livemode)
            .fetch_one(&self.pool)
            .await?)
    }

    async fn thresholds(&self, payer_id: &str) -> Result<Vec<(Currency, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT currency, amount FROM payer_thresholds WHERE payer_id = $1 ORDER BY currency",
        )
        .bind(payer_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let currency: String = row.try_get("currency")?;
                Ok((currency.parse().map_err(corrupt)?, row.try_get("amount")?))
            })
            .collect()
    }

    async fn set_threshold(
        &self,
        payer_id: &str,
        currency: Currency,
        amount: i64,
    ) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query(
                "INSERT INTO payer_thresholds (payer_id, currency, amount) VALUES ($1, $2, $3) \
                 ON CONFLICT (payer_id, currency) DO UPDATE SET amount = EXCLUDED.amount",
            )
            .bind(payer_id)
            .bind(currency.code())
            .bind(amount)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn insert_passkey(&self, passkey: &Passkey) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query(&format!(
                "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5)"
            ))
            .bind(&passkey.credential_id)
            .bind(&passkey.payer_id)
            .bind(&passkey.public_key)
            .bind(passkey.sign_count)
            .bind(passkey.created_at)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn passkeys_of(&self, payer_id: &str) -> Result<Vec<Passkey>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE payer_id = $1 ORDER BY created_at"
        ))
        .bind(payer_id)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(passkey_from_row)
        .collect()
    }

    async fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<Passkey>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = $1"
        ))
        .bind(credential_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(passkey_from_row)
        .transpose()
    }

    async fn advance_sign_count(
        &self,
        credential_id: &[u8],
        count: i64,
    ) -> Result<bool, StoreError> {
        self.write(|mut tx| async move {
            // Authenticators that keep no counter always report 0.
            let changed = sqlx::query(
                "UPDATE passkeys SET sign_count = $2 WHERE credential_id = $1 \
                 AND ($2 > sign_count OR ($2 = 0 AND sign_count = 0))",
            )
            .bind(credential_id)
            .bind(count)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok((tx, changed == 1))
        })
        .await
    }

    async fn put_totp(&self, record: &TotpRecord) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query(
                "INSERT INTO totp_secrets (payer_id, secret, confirmed, last_step, created_at) \
                 VALUES ($1, $2, $3, $4, $5) \
                 ON CONFLICT (payer_id) DO UPDATE SET secret = EXCLUDED.secret, \
                     confirmed = EXCLUDED.confirmed, last_step = EXCLUDED.last_step, \
                     created_at = EXCLUDED.created_at",
            )
            .bind(&record.payer_id)
            .bind(&record.secret)
            .bind(record.confirmed)
            .bind(record.last_step)
            .bind(record.created_at)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn totp_of(&self, payer_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOTP_COLUMNS} FROM totp_secrets WHERE payer_id = $1"
        ))
        .bind(payer_id)
        .fetch_optional(&self.pool)
        .await?
        .as_ref()
        .map(totp_from_row)
        .transpose()
    }

    async fn use_totp_step(
        &self,
        payer_id: &str,
        step: i64,
        confirm: bool,
    ) -> Result<bool, StoreError> {
        self.write(|mut tx| async move {
            let changed = sqlx::query(
                "UPDATE totp_secrets SET last_step = $2, confirmed = confirmed OR $3 \
                 WHERE payer_id = $1 AND last_step < $2",
            )
            .bind(payer_id)
            .bind(step)
            .bind(confirm)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            Ok((tx, changed == 1))
        })
        .await
    }

    async fn insert_login(
        &self,
        token_hash: &str,
        payer_id: &str,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query(
                "INSERT INTO payer_logins (token_hash, payer_id, created_at, expires_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(token_hash)
            .bind(payer_id)
            .bind(now_ms)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn find_login(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT payer_id FROM payer_logins WHERE token_hash = $1 AND expires_at > $2",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.pool)
        .await?)
    }

    async fn delete_login(&self, token_hash: &str) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query("DELETE FROM payer_logins WHERE token_hash = $1")
                .bind(token_hash)
                .execute(&mut *tx)
                .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn insert_challenge(&self, c: &Challenge) -> Result<(), StoreError> {
        self.write(|mut tx| async move {
            sqlx::query(
                "INSERT INTO challenges (id, purpose, payer_id, session_id, challenge, nonce, \
                                         expires_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&c.id)
            .bind(c.purpose.as_str())
            .bind(&c.payer_id)
            .bind(&c.session_id)
            .bind(&c.challenge)
            .bind(&c.nonce)
            .bind(c.expires_at)
            .execute(&mut *tx)
            .await?;
            Ok((tx, ()))
        })
        .await
    }

    async fn take_challenge(&self, id: &str, now_ms: i64) -> Result<Option<Challenge>, StoreError> {
        let taken = self
            .write(|mut tx| async move {
                let taken = sqlx::query(&format!(
                    "DELETE FROM challenges WHERE id = $1 RETURNING {CHALLENGE_COLUMNS}"
                ))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
                .as_ref()
                .map(challenge_from_row)
                .transpose()?;
                // Expired challenges of anyone go too.
                sqlx::query("DELETE FROM challenges WHERE expires_at <= $1")
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await?;
                Ok((tx, taken))
            })
            .await?;
        Ok(taken.filter(|c| c.expires_at > now_ms))
    }
}
