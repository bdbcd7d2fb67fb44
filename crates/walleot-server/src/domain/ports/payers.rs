//! What the service keeps of payers: their factors, limits, logins and challenges.

use super::StoreError;
use crate::domain::payers::{Challenge, Passkey, Payer, TotpRecord};
use async_trait::async_trait;

#[async_trait]
pub trait PayerStore: Send + Sync + 'static {
    async fn insert_payer(&self, payer: &Payer) -> Result<(), StoreError>;
    async fn get_payer(&self, id: &str) -> Result<Option<Payer>, StoreError>;
    /// Counts a failed second-factor attempt; at `max` failures in a row the payer's
    /// approvals lock until `now + lock_ms`. Returns the payer as it now stands.
    async fn note_failed_attempt(
        &self,
        payer_id: &str,
        now_ms: i64,
        max: i64,
        lock_ms: i64,
    ) -> Result<Payer, StoreError>;
    async fn clear_failed_attempts(&self, payer_id: &str) -> Result<(), StoreError>;
    /// How many payments without a second factor the payer made to the merchant in
    /// one mode since `since_ms`.
    async fn auto_approvals_since(
        &self,
        payer_id: &str,
        merchant_id: &str,
        livemode: bool,
        since_ms: i64,
    ) -> Result<i64, StoreError>;

    async fn thresholds(
        &self,
        payer_id: &str,
    ) -> Result<Vec<(walleot_api::Currency, i64)>, StoreError>;
    async fn set_threshold(
        &self,
        payer_id: &str,
        currency: walleot_api::Currency,
        amount: i64,
    ) -> Result<(), StoreError>;

    async fn insert_passkey(&self, passkey: &Passkey) -> Result<(), StoreError>;
    async fn passkeys_of(&self, payer_id: &str) -> Result<Vec<Passkey>, StoreError>;
    async fn find_passkey(&self, credential_id: &[u8]) -> Result<Option<Passkey>, StoreError>;
    /// Stores a newer signature counter; false if it did not grow (a cloned key).
    async fn advance_sign_count(
        &self,
        credential_id: &[u8],
        count: i64,
    ) -> Result<bool, StoreError>;

    async fn put_totp(&self, record: &TotpRecord) -> Result<(), StoreError>;
    async fn totp_of(&self, payer_id: &str) -> Result<Option<TotpRecord>, StoreError>;
    /// Accepts a time step once: false if this or a later step was used already.
    async fn use_totp_step(
        &self,
        payer_id: &str,
        step: i64,
        confirm: bool,
    ) -> Result<bool, StoreError>;

    async fn insert_login(
        &self,
        token_hash: &str,
        payer_id: &str,
        now_ms: i64,
        expires_at: i64,
    ) -> Result<(), StoreError>;
    async fn find_login(&self, token_hash: &str, now_ms: i64)
        -> Result<Option<String>, StoreError>;
    async fn delete_login(&self, token_hash: &str) -> Result<(), StoreError>;

    async fn insert_challenge(&self, challenge: &Challenge) -> Result<(), StoreError>;
    /// Removes and returns an unexpired challenge: each is used at most once.
    async fn take_challenge(&self, id: &str, now_ms: i64) -> Result<Option<Challenge>, StoreError>;
}
