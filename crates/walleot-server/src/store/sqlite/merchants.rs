//! Merchants and their API keys in SQLite.

use super::SqliteStore;
use super::{key_from_row, merchant_from_row, KEY};
use crate::domain::ports::{ApiKeyRecord, Merchant, MerchantStore, StoreError};
use async_trait::async_trait;
use rusqlite::params;

#[async_trait]
impl MerchantStore for SqliteStore {
    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        let merchant = merchant.clone();
        self.writer
            .run(move |db| {
                db.prepare_cached("INSERT INTO merchants (id, name, created_at) VALUES (?, ?, ?)")?
                    .execute(params![merchant.id, merchant.name, merchant.created_at])?;
                Ok(())
            })
            .await
    }

    async fn find_merchant(&self, id_or_name: &str) -> Result<Option<Merchant>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM merchants WHERE id = ?1 OR name = ?1")
            .bind(id_or_name)
            .fetch_optional(&self.reader)
            .await?
            .as_ref()
            .map(merchant_from_row)
            .transpose()
    }

    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM merchants ORDER BY created_at, id")
            .fetch_all(&self.reader)
            .await?
            .iter()
            .map(merchant_from_row)
            .collect()
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        let key = key.clone();
        self.writer
            .run(move |db| {
                db.prepare_cached(
                    "INSERT INTO api_keys (id, merchant_id, livemode, hash, prefix, created_at, \
                                           revoked_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?)",
                )?
                .execute(params![
                    key.id,
                    key.merchant_id,
                    key.mode.is_live(),
                    key.hash,
                    key.prefix,
                    key.created_at,
                    key.revoked_at,
                ])?;
                Ok(())
            })
            .await
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT k.id, k.merchant_id, m.name AS merchant_name, k.livemode, k.hash, k.prefix, \
                    k.created_at, k.revoked_at \
             FROM api_keys k JOIN merchants m ON m.id = k.merchant_id WHERE k.hash = ?",
        )
        .bind(hash)
        .fetch_optional(&self.reader)
        .await?
        .as_ref()
        .map(|row| key_from_row(row, &KEY))
        .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query(
            "SELECT k.id, k.merchant_id, m.name AS merchant_name, k.livemode, k.hash, k.prefix, \
                    k.created_at, k.revoked_at \
             FROM api_keys k JOIN merchants m ON m.id = k.merchant_id \
             ORDER BY k.created_at, k.id",
        )
        .fetch_all(&self.reader)
        .await?
        .iter()
        .map(|row| key_from_row(row, &KEY))
        .collect()
    }

    async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.writer
            .run(move |db| {
                let changed = db
                    .prepare_cached(
                        "UPDATE api_keys SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                    )?
                    .execute(params![now_ms, id])?;
                Ok(changed == 1)
            })
            .await
    }
}
