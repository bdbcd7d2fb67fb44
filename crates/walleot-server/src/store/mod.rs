//! The databases behind the domain's storage ports (`crate::domain::ports`): each has
//! its implementation beside this file, with its SQL and migrations.

mod sqlite;

pub use crate::domain::ports::*;
pub use sqlite::SqliteStore;

/// Opens the store a database URL names, creating and migrating it as needed.
pub async fn open(url: &str) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(SqliteStore::open(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}
