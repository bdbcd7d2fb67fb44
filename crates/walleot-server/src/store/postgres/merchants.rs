//! Merchants and their API keys in PostgreSQL.

use super::PostgresStore;
use crate::domain::ports::{ApiKeyRecord, Merchant, MerchantStore, StoreError};
use crate::store::rows::*;
use async_trait::async_trait;

/// Keys with their merchant's name; a key's row is read on every request, from
/// whichever instance, so a revocation is seen by all at once.
const KEY_SELECT: &str =
    "SELECT k.id, k.merchant_id, m.name AS merchant_name, k.livemode, k.hash, k.prefix, \
            k.created_at, k.revoked_at \
     FROM api_keys k JOIN merchants m ON m.id = k.merchant_id";

#[async_trait]
impl MerchantStore for PostgresStore {
    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO merchants (id, name, created_at) VALUES ($1, $2, $3)")
            .bind(&merchant.id)
            .bind(&merchant.name)
            .bind(merchant.created_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn find_merchant(&self, id_or_name: &str) -> Result<Option<Merchant>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM merchants WHERE id = $1 OR name = $1")
            .bind(id_or_name)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(merchant_from_row)
            .transpose()
    }

    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError> {
        sqlx::query("SELECT id, name, created_at FROM merchants ORDER BY created_at, id")
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(merchant_from_row)
            .collect()
    }

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO api_keys (id, merchant_id, livemode, hash, prefix, created_at, revoked_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&key.id)
        .bind(&key.merchant_id)
        .bind(key.mode.is_live())
        .bind(&key.hash)
        .bind(&key.prefix)
        .bind(key.created_at)
        .bind(key.revoked_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query(&format!("{KEY_SELECT} WHERE k.hash = $1"))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(|row| key_from_row(row, &KEY))
            .transpose()
    }

    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query(&format!("{KEY_SELECT} ORDER BY k.created_at, k.id"))
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|row| key_from_row(row, &KEY))
            .collect()
    }

    async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError> {
        let changed =
            sqlx::query("UPDATE api_keys SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
                .bind(now_ms)
                .bind(id)
                .execute(&self.pool)
                .await?
                .rows_affected();
        Ok(changed == 1)
    }
}
