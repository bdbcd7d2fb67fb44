//! Secret API keys: their format, how they are hashed for storage, and authentication.
//!
//! A key reads `sk_test_<30 random base62><6 base62 checksum>` (or `sk_live_…`). The
//! checksum lets secret scanners and this service tell a real key from a typo without a
//! database look-up. Only an HMAC-SHA256 of the key, under a service secret, is stored,
//! with a short display prefix; the key itself is shown once, when created.

use super::{ids, DomainError};
use crate::domain::ports::{ApiKeyRecord, Store};
use crate::domain::sessions::SessionRecord;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;
use std::sync::Arc;
use subtle::ConstantTimeEq;

const RANDOM_PART: usize = 30;
const CHECKSUM_PART: usize = 6;
const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Test or live: which money a key, a session, an account or a voucher belongs to.
/// Test keys see test data only, live keys live data only; the API shows it as the
/// `livemode` flag.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, strum::IntoStaticStr, strum::EnumString, strum::Display,
)]
#[strum(
    serialize_all = "lowercase",
    parse_err_ty = String,
    parse_err_fn = unknown_livemode
)]
pub enum Livemode {
    Test,
    Live,
}

fn unknown_livemode(raw: &str) -> String {
    format!("unknown mode `{raw}`; expected test or live")
}

impl Livemode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn is_live(self) -> bool {
        self == Livemode::Live
    }

    pub fn from_flag(livemode: bool) -> Self {
        if livemode {
            Livemode::Live
        } else {
            Livemode::Test
        }
    }
}

/// A secret key in clear. Its `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    secret: String,
    mode: Livemode,
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ApiKey({}…)", self.display_prefix())
    }
}

fn checksum(body: &str) -> String {
    let mut n = crc32fast::hash(body.as_bytes()) as u64;
    let mut out = [b'0'; CHECKSUM_PART];
    for slot in out.iter_mut().rev() {
        *slot = BASE62[(n % 62) as usize];
        n /= 62;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl ApiKey {
    pub fn generate(mode: Livemode) -> Self {
        let body = format!("sk_{}_{}", mode.as_str(), ids::random_base62(RANDOM_PART));
        let secret = format!("{body}{}", checksum(&body));
        ApiKey { secret, mode }
    }

    /// Checks the shape and checksum; says nothing of whether the key exists.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let (mode, rest) = if let Some(rest) = raw.strip_prefix("sk_test_") {
            (Livemode::Test, rest)
        } else if let Some(rest) = raw.strip_prefix("sk_live_") {
            (Livemode::Live, rest)
        } else {
            return Err("an API key starts with sk_test_ or sk_live_");
        };
        if rest.len() != RANDOM_PART + CHECKSUM_PART
            || !rest.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err("the API key is malformed");
        }
        let (body, sum) = raw.split_at(raw.len() - CHECKSUM_PART);
        if checksum(body).as_bytes().ct_eq(sum.as_bytes()).unwrap_u8() != 1 {
            return Err("the API key is malformed (bad checksum)");
        }
        Ok(ApiKey {
            secret: raw.to_string(),
            mode,
        })
    }

    pub fn mode(&self) -> Livemode {
        self.mode
    }

    pub fn expose_secret(&self) -> &str {
        &self.secret
    }

    /// What may be shown of a key later: mode prefix and four characters.
    pub fn display_prefix(&self) -> String {
        self.secret.chars().take("sk_test_".len() + 4).collect()
    }
}

/// Hashes keys for storage under a service secret, so that a copy of the database alone
/// does not let anyone test guesses offline.
#[derive(Clone)]
pub struct KeyHasher {
    secret: Vec<u8>,
}

impl KeyHasher {
    pub fn new(secret: Vec<u8>) -> Self {
        KeyHasher { secret }
    }

    pub fn hash(&self, key: &ApiKey) -> String {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC accepts any key length");
        mac.update(key.expose_secret().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }
}

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub merchant_id: String,
    pub merchant_name: String,
    pub mode: Livemode,
}

/// Why a key was refused. All answer 401; the message helps the key's owner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("no API key: send `Authorization: Bearer sk_test_…`")]
    Missing,
    #[error("{0}")]
    Malformed(&'static str),
    #[error("the API key is not valid")]
    Unknown,
    #[error("the API key has been revoked")]
    Revoked,
}

/// Creation, listing, revocation and checking of API keys.
#[derive(Clone)]
pub struct Keys {
    store: Arc<dyn Store>,
    hasher: KeyHasher,
}

/// The principal of a stored key found by `hash`, if it may be used.
fn admit(record: Option<ApiKeyRecord>, hash: &str) -> Result<Principal, AuthenticateError> {
    let record = record.ok_or(AuthError::Unknown)?;
    // The look-up was by hash; compare again in constant time so that no branch
    // depends on how much of a stored hash matched.
    if record.hash.as_bytes().ct_eq(hash.as_bytes()).unwrap_u8() != 1 {
        return Err(AuthError::Unknown.into());
    }
    if record.revoked_at.is_some() {
        return Err(AuthError::Revoked.into());
    }
    Ok(Principal {
        key_id: record.id,
        merchant_id: record.merchant_id,
        merchant_name: record.merchant_name,
        mode: record.mode,
    })
}

impl Keys {
    pub fn new(store: Arc<dyn Store>, hasher: KeyHasher) -> Self {
        Keys { store, hasher }
    }

    /// Resolves the value of an `Authorization` header to its merchant and mode.
    pub async fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthenticateError> {
        let hash = self.hash_of(header)?;
        let record = self.store.find_api_key(&hash).await?;
        admit(record, &hash)
    }

    /// Authenticates as [`Self::authenticate`] does and, in the same read, fetches
    /// session `session_id` if the key's merchant owns it in the key's mode: the status
    /// check's one read (see `Store::key_and_session`). `None` when the store cannot
    /// answer so; the caller then authenticates the usual way.
    pub async fn authenticate_reading(
        &self,
        header: Option<&str>,
        session_id: &str,
    ) -> Option<Result<(Principal, Option<SessionRecord>), AuthenticateError>> {
        let hash = match self.hash_of(header) {
            Ok(hash) => hash,
            Err(refused) => return Some(Err(refused)),
        };
        Some(match self.store.key_and_session(&hash, session_id).await? {
            Ok((record, session)) => admit(record, &hash).map(|principal| (principal, session)),
            Err(e) => Err(e.into()),
        })
    }

    /// The hash of the key an `Authorization` header carries.
    fn hash_of(&self, header: Option<&str>) -> Result<String, AuthenticateError> {
        let header = header.ok_or(AuthError::Missing)?;
        // The scheme is case-insensitive (RFC 9110, section 11.1); spaces may follow it.
        let raw = header
            .split_once(' ')
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, rest)| rest.trim())
            .ok_or(AuthError::Malformed(
                "the Authorization header must read `Bearer <secret key>`",
            ))?;
        let key = ApiKey::parse(raw).map_err(AuthError::Malformed)?;
        Ok(self.hasher.hash(&key))
    }

    /// Creates a key and returns it in clear: the only time it can be seen.
    pub async fn create(
        &self,
        merchant_id: &str,
        mode: Livemode,
        now_ms: i64,
    ) -> Result<(ApiKeyRecord, ApiKey), DomainError> {
        let key = ApiKey::generate(mode);
        let record = ApiKeyRecord {
            id: ids::new_id("key"),
            merchant_id: merchant_id.to_string(),
            merchant_name: String::new(),
            mode,
            hash: self.hasher.hash(&key),
            prefix: key.display_prefix(),
            created_at: now_ms,
            revoked_at: None,
        };
        self.store.insert_api_key(&record).await?;
        Ok((record, key))
    }

    pub async fn list(&self) -> Result<Vec<ApiKeyRecord>, DomainError> {
        Ok(self.store.list_api_keys().await?)
    }

    pub async fn revoke(&self, key_id: &str, now_ms: i64) -> Result<(), DomainError> {
        if self.store.revoke_api_key(key_id, now_ms).await? {
            Ok(())
        } else {
            Err(DomainError::NotFound(format!(
                "no active API key with id `{key_id}`"
            )))
        }
    }
}

/// Authentication fails either because of the key or because storage did.
#[derive(Debug, thiserror::Error)]
pub enum AuthenticateError {
    #[error(transparent)]
    Refused(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] crate::domain::ports::StoreError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_parse_back_with_their_mode() {
        for mode in [Livemode::Test, Livemode::Live] {
            let key = ApiKey::generate(mode);
            assert!(key.expose_secret().starts_with(&format!("sk_{mode}_")));
            assert_eq!(key.expose_secret().len(), 8 + RANDOM_PART + CHECKSUM_PART);
            assert_eq!(ApiKey::parse(key.expose_secret()).unwrap(), key);
        }
    }

    #[test]
    fn a_changed_character_breaks_the_checksum() {
        let key = ApiKey::generate(Livemode::Test);
        let mut bytes = key.expose_secret().as_bytes().to_vec();
        bytes[12] = if bytes[12] == b'a' { b'b' } else { b'a' };
        let typo = String::from_utf8(bytes).unwrap();
        assert!(ApiKey::parse(&typo).is_err());
    }

    #[test]
    fn malformed_keys_are_refused() {
        let cases = [
            "",
            "sk_test_",
            "pk_test_0123456789012345678901234567890123456",
            "sk_prod_012345678901234567890123456789012345",
            "sk_test_short",
            "sk_test_01234567890123456789012345678901234!",
        ];
        for raw in cases {
            assert!(ApiKey::parse(raw).is_err(), "{raw:?} was accepted");
        }
    }

    #[test]
    fn debug_output_never_shows_the_secret() {
        let key = ApiKey::generate(Livemode::Live);
        let shown = format!("{key:?}");
        assert!(!shown.contains(key.expose_secret()), "{shown}");
        assert!(shown.starts_with("ApiKey(sk_live_"));
    }

    #[test]
    fn hashes_depend_on_the_service_secret() {
        let key = ApiKey::generate(Livemode::Test);
        let a = KeyHasher::new(b"one".to_vec()).hash(&key);
        let b = KeyHasher::new(b"two".to_vec()).hash(&key);
        assert_ne!(a, b);
        assert_eq!(a, KeyHasher::new(b"one".to_vec()).hash(&key));
        assert!(!a.contains(key.expose_secret()));
    }
}
