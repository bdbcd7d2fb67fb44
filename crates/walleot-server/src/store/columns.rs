//! Reading a result row by column name, whichever driver produced it: the mapping of
//! a stored row (`super::rows`) is written once for every database and driver.

use crate::domain::ports::StoreError;
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

pub(super) trait Columns {
    fn int(&self, name: &str) -> Result<i64, StoreError>;
    fn int_or_null(&self, name: &str) -> Result<Option<i64>, StoreError>;
    fn text(&self, name: &str) -> Result<String, StoreError>;
    fn text_or_null(&self, name: &str) -> Result<Option<String>, StoreError>;
    fn bytes(&self, name: &str) -> Result<Vec<u8>, StoreError>;

    /// A 0/1 column.
    fn flag(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.int(name)? != 0)
    }
}

impl Columns for SqliteRow {
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn int_or_null(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn text(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn text_or_null(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn bytes(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for sqlx::postgres::PgRow {
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn int_or_null(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn text(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn text_or_null(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(name)?)
    }
    fn bytes(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.try_get(name)?)
    }
    /// A BOOLEAN column.
    fn flag(&self, name: &str) -> Result<bool, StoreError> {
        Ok(self.try_get(name)?)
    }
}

impl Columns for rusqlite::Row<'_> {
    fn int(&self, name: &str) -> Result<i64, StoreError> {
        Ok(self.get(name)?)
    }
    fn int_or_null(&self, name: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.get(name)?)
    }
    fn text(&self, name: &str) -> Result<String, StoreError> {
        Ok(self.get(name)?)
    }
    fn text_or_null(&self, name: &str) -> Result<Option<String>, StoreError> {
        Ok(self.get(name)?)
    }
    fn bytes(&self, name: &str) -> Result<Vec<u8>, StoreError> {
        Ok(self.get(name)?)
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}
