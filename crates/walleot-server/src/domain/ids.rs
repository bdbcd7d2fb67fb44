//! Identifiers with a type prefix (`sess_`, `mer_`, `key_`, `evt_`), so that an id says
//! what it names, and 24 base62 characters: the time of creation (8 characters of
//! milliseconds, so that ids sort by age) and 16 random ones (about 95 bits, so that
//! an id cannot be guessed). Ids that sort by age are appended at the end of their
//! indexes instead of landing on a random page each, which makes every write that
//! inserts one touch fewer pages.

use rand::RngCore;

/// Length of the part after the prefix: 24 base62 characters.
pub const RANDOM_LEN: usize = 24;

/// Characters of the time of creation, in milliseconds: 62^8 of them last 6,900 years.
const TIME_LEN: usize = 8;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// `len` characters drawn uniformly from the operating system's generator: bytes below
/// 248 (four times 62) are kept, the rest drawn again. Bytes are asked for in one call
/// per batch, not one per character, which cost a system call each.
pub fn random_base62(len: usize) -> String {
    let mut out = String::with_capacity(len);
    let mut bytes = [0u8; 64];
    while out.len() < len {
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        out.extend(
            bytes
                .iter()
                .filter(|&&b| b < 248)
                .take(len - out.len())
                .map(|&b| char::from(BASE62[usize::from(b % 62)])),
        );
    }
    out
}

pub fn new_id(prefix: &str) -> String {
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let mut id = String::with_capacity(prefix.len() + 1 + RANDOM_LEN);
    id.push_str(prefix);
    id.push('_');
    // Fixed width, most significant first: the alphabet is in ASCII order, so ids
    // compare as their times do.
    for place in (0..TIME_LEN).rev() {
        let digit = (now_ms / 62u128.pow(place as u32)) % 62;
        id.push(char::from(BASE62[digit as usize]));
    }
    id.push_str(&random_base62(RANDOM_LEN - TIME_LEN));
    id
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
    fn random_characters_cover_the_alphabet_evenly() {
        let drawn = random_base62(62 * 1000);
        assert_eq!(drawn.len(), 62 * 1000);
        let mut counts = std::collections::HashMap::new();
        for c in drawn.chars() {
            *counts.entry(c).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), 62);
        // Each character is expected 1000 times (standard deviation about 31); taking
        // every byte modulo 62 would draw eight of them a quarter more often, about
        // 1250 times, outside this band.
        assert!(
            counts.values().all(|&n| (800..1200).contains(&n)),
            "{counts:?}"
        );
        assert_eq!(random_base62(0), "");
        assert_eq!(random_base62(200).len(), 200);
    }

    #[test]
    fn ids_sort_by_the_time_they_were_made() {
        let earlier = new_id("tr");
        std::thread::sleep(std::time::Duration::from_millis(2));
        let later = new_id("tr");
        assert!(earlier < later, "{earlier} {later}");
        // Made in the same millisecond or not, two ids differ in their random part.
        let (a, b) = (new_id("evt"), new_id("evt"));
        assert_ne!(a[4 + TIME_LEN..], b[4 + TIME_LEN..]);
    }

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
