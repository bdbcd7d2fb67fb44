//! Random identifiers with a type prefix (`sess_`, `mer_`, `key_`, `evt_`), so that an id
//! says what it names and cannot be guessed.

use rand::distributions::{Alphanumeric, DistString};

/// Length of the random part: 24 base62 characters, about 143 bits.
pub const RANDOM_LEN: usize = 24;

pub fn random_base62(len: usize) -> String {
    Alphanumeric.sample_string(&mut rand::rngs::OsRng, len)
}

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", random_base62(RANDOM_LEN))
}

/// Whether `raw` is `{prefix}_` followed by exactly [`RANDOM_LEN`] base62 characters.
pub fn has_shape(raw: &str, prefix: &str) -> bool {
    raw.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| {
            rest.len() == RANDOM_LEN && rest.bytes().all(|b| b.is_ascii_alphanumeric())
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_have_their_shape_and_differ() {
        let a = new_id("sess");
        let b = new_id("sess");
        assert!(has_shape(&a, "sess"), "{a}");
        assert_ne!(a, b);
        assert!(!has_shape(&a, "mer"));
        assert!(!has_shape("sess_short", "sess"));
        assert!(!has_shape(&format!("{a}x"), "sess"));
        assert!(!has_shape("sess_../../../../etc/passwd0000000", "sess"));
    }
}
