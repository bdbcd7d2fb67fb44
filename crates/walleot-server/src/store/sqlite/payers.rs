//! Payers, their factors, logins and WebAuthn challenges in SQLite.

use super::SqliteStore;
use crate::domain::payers::{Challenge, Passkey, Payer, TotpRecord};
use crate::store::rows::*;
use crate::store::{PayerStore, StoreError};
use async_trait::async_trait;
use rusqlite::{params, OptionalExtension};
use sqlx::Row;
use walleot_api::Currency;

/// Approvals without a second factor of one payer for one merchant and mode since an
/// instant: the figure the hourly limit of such approvals is checked against.
pub(super) const AUTO_APPROVALS_SINCE: &str = "SELECT COUNT(*) FROM approvals a \
     JOIN sessions s ON s.id = a.session_id \
     WHERE a.payer_id = ? AND a.method = 'auto' AND a.created_at > ? \
     AND s.merchant_id = ? AND s.livemode = ?";

#[async_trait]
impl PayerStore for SqliteStore {
    async fn insert_payer(&self, payer: &Payer) -> Result<(), StoreError> {
        let payer = payer.clone();
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "INSERT INTO payers (id, created_at, failed_attempts, locked_until) \
                     VALUES (?, ?, ?, ?)",
                )?
                .execute(params![
                    payer.id,
                    payer.created_at,
                    payer.failed_attempts,
                    payer.locked_until
                ])?;
                Ok(())
            })
            .await
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
        let payer_id = payer_id.to_owned();
        self.writer
            .run(move |db| {
                db.prepare_cached(&format!(
                    "UPDATE payers SET \
                         locked_until = CASE WHEN failed_attempts + 1 >= ?2 THEN ?3 + ?4 ELSE locked_until END, \
                         failed_attempts = CASE WHEN failed_attempts + 1 >= ?2 THEN 0 ELSE failed_attempts + 1 END \
                     WHERE id = ?1 RETURNING {PAYER_COLUMNS}"
                ))?
                .query_row(params![payer_id, max, now_ms, lock_ms], |row| {
                    Ok(payer_from_row(row))
                })?
            })
            .await
    }

    async fn clear_failed_attempts(&self, payer_id: &str) -> Result<(), StoreError> {
        let payer_id = payer_id.to_owned();
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "UPDATE payers SET failed_attempts = 0 WHERE id = ? AND failed_attempts <> 0",
                )?
                .execute([payer_id])?;
                Ok(())
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
        let payer_id = payer_id.to_owned();
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "INSERT INTO payer_thresholds (payer_id, currency, amount) VALUES (?, ?, ?) \
                     ON CONFLICT (payer_id, currency) DO UPDATE SET amount = excluded.amount",
                )?
                .execute(params![payer_id, currency.code(), amount])?;
                Ok(())
            })
            .await
    }

    async fn insert_passkey(&self, passkey: &Passkey) -> Result<(), StoreError> {
        let passkey = passkey.clone();
        self.writer
            .run(move |db| {
                db.prepare_cached(&format!(
                    "INSERT INTO passkeys ({PASSKEY_COLUMNS}) VALUES (?, ?, ?, ?, ?)"
                ))?
                .execute(params![
                    passkey.credential_id,
                    passkey.payer_id,
                    passkey.public_key,
                    passkey.sign_count,
                    passkey.created_at
                ])?;
                Ok(())
            })
            .await
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
        let credential_id = credential_id.to_vec();
        self.writer
            .run(move |db| {
                // Authenticators that keep no counter always report 0.
                let changed = db
                    .prepare_cached(
                        "UPDATE passkeys SET sign_count = ?2 WHERE credential_id = ?1 \
                         AND (?2 > sign_count OR (?2 = 0 AND sign_count = 0))",
                    )?
                    .execute(params![credential_id, count])?;
                Ok(changed == 1)
            })
            .await
    }

    async fn put_totp(&self, record: &TotpRecord) -> Result<(), StoreError> {
        let record = record.clone();
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "INSERT INTO totp_secrets (payer_id, secret, confirmed, last_step, created_at) \
                     VALUES (?, ?, ?, ?, ?) \
                     ON CONFLICT (payer_id) DO UPDATE SET secret = excluded.secret, \
                         confirmed = excluded.confirmed, last_step = excluded.last_step, \
                         created_at = excluded.created_at",
                )?
                .execute(params![
                    record.payer_id,
                    record.secret,
                    record.confirmed,
                    record.last_step,
                    record.created_at
                ])?;
                Ok(())
            })
            .await
    }

    async fn totp_of(&self, payer_id: &str) -> Result<Option<TotpRecord>, StoreError> {
        sqlx::query(&format!(
            "SELECT {TOTP_COLUMNS} FROM totp_secrets WHERE payer_id = ?"
        ))
        .bind(payer_id)
        .fetch_optional(&self.reader)
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
        let payer_id = payer_id.to_owned();
        self.writer
            .run(move |db| {
                let changed = db
                    .prepare_cached(
                        "UPDATE totp_secrets SET last_step = ?2, confirmed = MAX(confirmed, ?3) \
                         WHERE payer_id = ?1 AND last_step < ?2",
                    )?
                    .execute(params![payer_id, step, confirm])?;
                Ok(changed == 1)
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
        let (token_hash, payer_id) = (token_hash.to_owned(), payer_id.to_owned());
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "INSERT INTO payer_logins (token_hash, payer_id, created_at, expires_at) \
                     VALUES (?, ?, ?, ?)",
                )?
                .execute(params![token_hash, payer_id, now_ms, expires_at])?;
                Ok(())
            })
            .await
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
        let token_hash = token_hash.to_owned();
        self.writer
            .run(move |db| {
                db.prepare_cached("DELETE FROM payer_logins WHERE token_hash = ?")?
                    .execute([token_hash])?;
                Ok(())
            })
            .await
    }

    async fn insert_challenge(&self, c: &Challenge) -> Result<(), StoreError> {
        let c = c.clone();
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "INSERT INTO challenges (id, purpose, payer_id, session_id, challenge, nonce, \
                                             expires_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    c.id,
                    c.purpose.as_str(),
                    c.payer_id,
                    c.session_id,
                    c.challenge,
                    c.nonce,
                    c.expires_at
                ])?;
                Ok(())
            })
            .await
    }

    async fn take_challenge(&self, id: &str, now_ms: i64) -> Result<Option<Challenge>, StoreError> {
        let id = id.to_owned();
        let taken = self
            .writer
            .run(move |db| {
                let taken = db
                    .prepare_cached(&format!(
                        "DELETE FROM challenges WHERE id = ? RETURNING {CHALLENGE_COLUMNS}"
                    ))?
                    .query_row([id], |row| Ok(challenge_from_row(row)))
                    .optional()?
                    .transpose()?;
                // Expired challenges of anyone go too.
                db.prepare_cached("DELETE FROM challenges WHERE expires_at <= ?")?
                    .execute([now_ms])?;
                Ok(taken)
            })
            .await?;
        Ok(taken.filter(|c| c.expires_at > now_ms))
    }
}
