//! Cursor pages of the merchant's lists (sessions, mandates): the page size and the
//! cursor, checked alike for every list.

use super::{ids, DomainError};

/// Items a page holds unless asked otherwise, and at most.
pub const DEFAULT_PAGE: i64 = 10;
pub const MAX_PAGE: i64 = 100;

/// The page size asked for, within 1 to [`MAX_PAGE`].
pub fn page_limit(limit: Option<i64>) -> Result<i64, DomainError> {
    let limit = limit.unwrap_or(DEFAULT_PAGE);
    if !(1..=MAX_PAGE).contains(&limit) {
        return Err(DomainError::invalid(
            "limit",
            format!("must be between 1 and {MAX_PAGE}"),
        ));
    }
    Ok(limit)
}

/// The cursor of a page: none (or empty) for the first page; else the id of the last
/// item of the previous page, an id of this `prefix`.
pub fn cursor<'a>(raw: Option<&'a str>, prefix: &str) -> Result<Option<&'a str>, DomainError> {
    match raw {
        None | Some("") => Ok(None),
        Some(cursor) if !ids::has_shape(cursor, prefix) => Err(DomainError::invalid(
            "cursor",
            format!("must be the `nextCursor` of an earlier page ({prefix}_…)"),
        )),
        Some(cursor) => Ok(Some(cursor)),
    }
}

/// A cursor that names no `what` of this account: missing, as the item would be.
pub fn unknown_cursor(what: &str, cursor: &str) -> DomainError {
    DomainError::NotFound(format!(
        "cursor: no {what} `{cursor}` of this key's account to list after"
    ))
}
