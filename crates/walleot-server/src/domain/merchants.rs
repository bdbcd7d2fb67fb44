//! Merchants: the owners of API keys and of the sessions those keys create.

use super::{ids, DomainError};
use crate::domain::ports::{Merchant, Store};
use std::sync::Arc;

/// Name given to the merchant created on first start of an empty database.
pub const DEMO_MERCHANT: &str = "Demo merchant";

#[derive(Clone)]
pub struct Merchants {
    store: Arc<dyn Store>,
}

impl Merchants {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Merchants { store }
    }

    pub async fn create(&self, name: &str, now_ms: i64) -> Result<Merchant, DomainError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 {
            return Err(DomainError::invalid(
                "name",
                "a merchant name has 1 to 100 characters",
            ));
        }
        if self.store.find_merchant(name).await?.is_some() {
            return Err(DomainError::Conflict(format!(
                "a merchant named `{name}` already exists"
            )));
        }
        let merchant = Merchant {
            id: ids::new_id("mer"),
            name: name.to_string(),
            created_at: now_ms,
        };
        self.store.insert_merchant(&merchant).await?;
        Ok(merchant)
    }

    /// Finds a merchant by id or by name.
    pub async fn find(&self, id_or_name: &str) -> Result<Merchant, DomainError> {
        self.store
            .find_merchant(id_or_name)
            .await?
            .ok_or_else(|| DomainError::NotFound(format!("no merchant `{id_or_name}`")))
    }

    pub async fn list(&self) -> Result<Vec<Merchant>, DomainError> {
        Ok(self.store.list_merchants().await?)
    }

    /// The merchant to use when none is named: the only one, or the demo merchant,
    /// created if the database has none.
    pub async fn default_merchant(&self, now_ms: i64) -> Result<Merchant, DomainError> {
        let all = self.list().await?;
        match all.as_slice() {
            // Instances starting together on an empty database race to create it:
            // the one that loses finds the winner's.
            [] => match self.create(DEMO_MERCHANT, now_ms).await {
                Ok(created) => Ok(created),
                Err(e) => self.find(DEMO_MERCHANT).await.map_err(|_| e),
            },
            [only] => Ok(only.clone()),
            many => many
                .iter()
                .find(|m| m.name == DEMO_MERCHANT)
                .cloned()
                .ok_or_else(|| {
                    DomainError::invalid(
                        "merchant",
                        "several merchants exist: name one with --merchant",
                    )
                }),
        }
    }
}
