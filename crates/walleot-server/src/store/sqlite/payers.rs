//! Payers, their factors, logins and WebAuthn challenges in SQLite.

use super::{parse_stored, SqliteStore};
use crate::domain::payers::{Challenge, Passkey, Payer, TotpRecord};
use crate::store::{PayerStore, StoreError};
use async_trait::async_trait;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;
use walleot_api::Currency;

fn payer_from_row(row: &SqliteRow) -> Result<Payer, StoreError> {
    Ok(Payer {
        id: row.try_get("id")?,
        created_at: row.try_get("created_at")?,
        failed_attempts: row.try_get("failed_attempts")?,
        locked_until: row.try_get("locked_until")?,
    })
}

fn passkey_from_row(row: &SqliteRow) -> Result<Passkey, StoreError> {
    Ok(Passkey {
        credential_id: row.try_get("credential_id")?,
        payer_id: row.try_get("payer_id")?,
        public_key: row.try_get("public_key")?,
        sign_count: row.try_get("sign_count")?,
        created_at: row.try_get("created_at")?,
    })
}

const PAYER_COLUMNS: &str = "id, created_at, failed_attempts, locked_until";

/// Approvals without a second factor of one payer for one merchant and mode since an
/// instant: the figure the hourly limit of such approvals is checked against.
pub(super) const AUTO_APPROVALS_SINCE: &str = "SELECT COUNT(*) FROM approvals a \
     JOIN sessions s ON s.id = a.session_id \
     WHERE a.payer_id = ? AND a.method = 'auto' AND a.created_at > ? \
     AND s.merchant_id = ? AND s.livemode = ?";
const PASSKEY_COLUMNS: &str = "credential_id, payer_id, public_key, sign_count, created_at";

#[async_trait]
impl PayerStore for SqliteStore {
    async fn insert_payer(&self, payer: &Payer) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO payers (id, created_at, failed_attempts, locked_until) VALUES (?, ?, ?, ?)")
            .bind(&payer.id)
            .bind(payer.created_at)
            .bind(payer.failed_attempts)
            .bind(payer.locked_until)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn get_payer(&self, id: &str) -> Result<Option<Payer>, StoreError> {
        sqlx::query(&format!("SELECT {PAYER_COLUMNS} FROM payers WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.reader)
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
        let mut tx = self.write().await?;
        let row = sqlx::query(&format!(
            "UPDATE payers SET \
                 locked_until = CASE WHEN failed_attempts + 1 >= ?2 THEN ?3 + ?4 ELSE locked_until END, \
                 failed_attempts = CASE WHEN failed_attempts + 1 >= ?2 THEN 0 ELSE failed_attempts + 1 END \
             WHERE id = ?1 RETURNING {PAYER_COLUMNS}"
        ))
        .bind(payer_id)
        .bind(max)
        .bind(now_ms)
        .bind(lock_ms)
        .fetch_one(&mut *tx)
        .await?;
        let payer = payer_from_row(&row)?;
        tx.commit().await?;
        Ok(payer)
    }

    async fn clear_failed_attempts(&self, payer_id: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("UPDATE payers SET failed_attempts = 0 WHERE id = ? AND failed_attempts <> 0")
            .bind(payer_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
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
            .fetch_one(&self.reader)
            .await?)
    }

    async fn thresholds(&self, payer_id: &str) -> Result<Vec<(Currency, i64)>, StoreError> {
        let rows = sqlx::query(
            "SELECT currency, amount FROM payer_thresholds WHERE payer_id = ? ORDER BY currency",
        )
        .bind(payer_id)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                let currency: String = row.try_get("currency")?;
                Ok((
                    currency.parse().map_err(super::corrupt)?,
                    row.try_get("amount")?,
                ))
            })
            .collect()
    }

    async fn set_threshold(
        &self,
        payer_id: &str,
        currency: Currency,
        amount: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO payer_thresholds (payer_id, currency, amount) VALUES (?, ?, ?) \
             ON CONFLICT (payer_id, currency) DO UPDATE SET amount = excluded.amount",
        )
        .bind(payer_id)
        .bind(currency.code())
        .bind(amount)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_passkey(&self, passkey: &Passkey) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(&format!(
            "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
        ))
        .bind(&passkey.credential_id)
        .bind(&passkey.payer_id)
        .bind(&passkey.public_key)
        .bind(passkey.sign_count)
        .bind(passkey.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn passkeys_of(&self, payer_id: &str) -> Result<Vec<Passkey>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE payer_id = ? ORDER BY created_at"
        ))
        .bind(payer_id)
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(passkey_from_row)
        .collect()
    }

    async fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<Passkey>, StoreError> {
        sqlx::query(&format!(
            "SELECT {PASSKEY_COLUMNS} FROM passkeys WHERE credential_id = ?"
        ))
        .bind(credential_id)
        .fetch_optional(&self.reader)
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
        let mut tx = self.write().await?;
        // Authenticators that keep no counter always report 0.
        let done = sqlx::query(
            "UPDATE passkeys SET sign_count = ?2 WHERE credential_id = ?1 AND (?2 > sign_count OR (?2 = 0 AND sign_count = 0))",
        )
        .bind(credential_id)
        .bind(count)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn put_totp(&self, record: &TotpRecord) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO totp_secrets (payer_id, secret, confirmed, last_step, created_at) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT (payer_id) DO UPDATE SET secret = excluded.secret, confirmed = excluded.confirmed, \
                 last_step = excluded.last_step, created_at = excluded.created_at",
        )
        .bind(&record.payer_id)
        .bind(&record.secret)
        .bind(record.confirmed)
        .bind(record.last_step)
        .bind(record.created_at)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn totp_of(&self, payer_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        let row = sqlx::query("SELECT payer_id, secret, confirmed, last_step, created_at FROM totp_secrets WHERE payer_id = ?")
            .bind(payer_id)
            .fetch_optional(&self.reader)
            .await?;
        row.map(|row| {
            Ok(TotpRecord {
                payer_id: row.try_get("payer_id")?,
                secret: row.try_get("secret")?,
                confirmed: row.try_get("confirmed")?,
                last_step: row.try_get("last_step")?,
                created_at: row.try_get("created_at")?,
            })
        })
        .transpose()
    }

    async fn use_totp_step(
        &self,
        payer_id: &str,
        step: i64,
        confirm: bool,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write().await?;
        let done = sqlx::query(
            "UPDATE totp_secrets SET last_step = ?2, confirmed = MAX(confirmed, ?3) WHERE payer_id = ?1 AND last_step < ?2",
        )
        .bind(payer_id)
        .bind(step)
        .bind(confirm)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    async fn insert_login(
        &self,
        token_hash: &str,
        payer_id: &str,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("INSERT INTO payer_logins (token_hash, payer_id, created_at, expires_at) VALUES (?, ?, ?, ?)")
            .bind(token_hash)
            .bind(payer_id)
            .bind(now_ms)
            .bind(expires_at)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn find_login(
        &self,
        token_hash: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        Ok(sqlx::query_scalar(
            "SELECT payer_id FROM payer_logins WHERE token_hash = ? AND expires_at > ?",
        )
        .bind(token_hash)
        .bind(now_ms)
        .fetch_optional(&self.reader)
        .await?)
    }

    async fn delete_login(&self, token_hash: &str) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query("DELETE FROM payer_logins WHERE token_hash = ?")
            .bind(token_hash)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn insert_challenge(&self, c: &Challenge) -> Result<(), StoreError> {
        let mut tx = self.write().await?;
        sqlx::query(
            "INSERT INTO challenges (id, purpose, payer_id, session_id, challenge, nonce, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        tx.commit().await?;
        Ok(())
    }

    async fn take_challenge(&self, id: &str, now_ms: i64) -> Result<Option<Challenge>, StoreError> {
        let mut tx = self.write().await?;
        let row = sqlx::query(
            "DELETE FROM challenges WHERE id = ? \
             RETURNING id, purpose, payer_id, session_id, challenge, nonce, expires_at",
        )
        .bind(id)
        .fetch_optional(&mut *tx)
        .await?;
        // Expired challenges of anyone go too.
        sqlx::query("DELETE FROM challenges WHERE expires_at <= ?")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        let Some(row) = row else { return Ok(None) };
        let expires_at: i64 = row.try_get("expires_at")?;
        if expires_at <= now_ms {
            return Ok(None);
        }
        let purpose: String = row.try_get("purpose")?;
        Ok(Some(Challenge {
            id: row.try_get("id")?,
            purpose: parse_stored(&purpose, "challenge purpose")?,
            payer_id: row.try_get("payer_id")?,
            session_id: row.try_get("session_id")?,
            challenge: row.try_get("challenge")?,
            nonce: row.try_get("nonce")?,
            expires_at,
        }))
    }
}
