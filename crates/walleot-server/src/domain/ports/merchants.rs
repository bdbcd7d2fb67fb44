//! What the service keeps of merchants and their API keys.

use super::StoreError;
use crate::domain::Livemode;
use async_trait::async_trait;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Merchant {
    pub id: String,
    pub name: String,
    pub created_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    pub id: String,
    pub merchant_id: String,
    /// Filled in by reads; ignored on insert.
    pub merchant_name: String,
    pub mode: Livemode,
    /// Hex HMAC-SHA256 of the key.
    pub hash: String,
    /// The first characters of the key, to recognise it in a list.
    pub prefix: String,
    pub created_at: i64,
    pub revoked_at: Option<i64>,
}

#[async_trait]
pub trait MerchantStore: Send + Sync + 'static {
    async fn insert_merchant(&self, merchant: &Merchant) -> Result<(), StoreError>;
    /// By id or by name.
    async fn find_merchant(&self, id_or_name: &str) -> Result<Option<Merchant>, StoreError>;
    async fn list_merchants(&self) -> Result<Vec<Merchant>, StoreError>;

    async fn insert_api_key(&self, key: &ApiKeyRecord) -> Result<(), StoreError>;
    async fn find_api_key(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError>;
    async fn list_api_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// False when no unrevoked key has this id.
    async fn revoke_api_key(&self, id: &str, now_ms: i64) -> Result<bool, StoreError>;
}
