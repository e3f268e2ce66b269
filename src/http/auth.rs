//! API keys: minting, hashing, and turning request headers into an authenticated key record.
//!
//! A key is `arb_` followed by 64 hex digits (32 random bytes). The server keeps only
//! `HMAC-SHA256(pepper, key)`: a leaked key store is useless without the pepper, and with it
//! still cannot be reversed. HMAC is implemented here (RFC 2104, ~20 lines over `sha2`) rather
//! than adding a crate; RFC 4231 vectors pin it down.

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use dashmap::DashMap;
use hyper::header::{HeaderValue, AUTHORIZATION};
use hyper::HeaderMap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// Every key starts with this, so a leaked key is recognisable (secret scanners, logs).
pub const KEY_PREFIX: &str = "arb_";

/// The header carrying the key (the alternative is `Authorization: Bearer <key>`).
pub const API_KEY_HEADER: &str = "x-api-key";

/// The optional header a client may send to assert which tenant it means.
pub const TENANT_HEADER: &str = "x-tenant-id";

const SHA256_BLOCK: usize = 64;

/// A new random API key: `arb_` + 32 random bytes in hex.
pub fn generate_key() -> String {
    let bytes = random_bytes();
    let mut key = String::with_capacity(KEY_PREFIX.len() + 64);
    key.push_str(KEY_PREFIX);
    key.push_str(&to_hex(&bytes));
    key
}

/// 32 bytes from the kernel CSPRNG; if `/dev/urandom` cannot be read (a broken chroot), a
/// SHA-256 of time, pid, a counter and a heap address — unpredictable enough for a fallback,
/// and logged so an operator can rotate keys minted that way.
fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    match File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes)) {
        Ok(()) => bytes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read /dev/urandom; API key randomness falls back to a clock hash");
            fallback_random()
        }
    }
}

fn fallback_random() -> [u8; 32] {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let marker = Box::new(0u8);
    let mut hasher = Sha256::new();
    hasher.update(nanos.to_le_bytes());
    hasher.update(std::process::id().to_le_bytes());
    hasher.update(COUNTER.fetch_add(1, Ordering::Relaxed).to_le_bytes());
    hasher.update(format!("{:p}", &*marker).as_bytes());
    hasher.finalize().into()
}

/// `HMAC-SHA256(pepper, key)` — what the key store holds instead of the key.
pub fn hash_key(pepper: &[u8], key: &str) -> [u8; 32] {
    hmac_sha256(pepper, key.as_bytes())
}

/// HMAC per RFC 2104: `H((K ^ opad) || H((K ^ ipad) || message))`, with keys longer than the
/// block hashed first and shorter ones zero-padded.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; SHA256_BLOCK];
    if key.len() > SHA256_BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let inner_pad = block.map(|b| b ^ 0x36);
    let outer_pad = block.map(|b| b ^ 0x5c);
    let inner = Sha256::new().chain_update(inner_pad).chain_update(message).finalize();
    Sha256::new().chain_update(outer_pad).chain_update(inner).finalize().into()
}

/// Compares two key hashes in constant time, so response timing reveals nothing about how many
/// leading bytes matched.
pub fn verify(hash_a: &[u8; 32], hash_b: &[u8; 32]) -> bool {
    hash_a.ct_eq(hash_b).into()
}

/// Lower-case hex, e.g. for storing a key hash as text.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0x0f)]));
    }
    out
}

/// Extracts the presented API key from request headers.
///
/// A unit struct so call sites read `Credentials::from_headers(...)`; there is no state.
#[derive(Debug, Clone, Copy)]
pub struct Credentials;

impl Credentials {
    /// The key from `X-API-Key` or `Authorization: Bearer <key>`; `Ok(None)` if neither is sent.
    ///
    /// 401 when `Authorization` is present but not a well-formed bearer token (and there is no
    /// `X-API-Key`), when a header is empty or not visible ASCII, or when both headers are sent
    /// with different keys — guessing which one was meant would hide a client bug.
    pub fn from_headers(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
        let api_key = headers.get(API_KEY_HEADER).map(api_key_value).transpose()?;
        let bearer = match (headers.get(AUTHORIZATION), &api_key) {
            (None, _) => None,
            (Some(value), None) => Some(bearer_value(value)?),
            // With X-API-Key present, a non-bearer Authorization (e.g. a proxy's Basic) is not ours.
            (Some(value), Some(_)) => bearer_value(value).ok(),
        };
        match (api_key, bearer) {
            (Some(a), Some(b)) if a != b => Err(ApiError::Unauthorized(
                "X-API-Key and Authorization carry different keys; send only one".to_string(),
            )),
            (Some(key), _) | (None, Some(key)) => Ok(Some(key)),
            (None, None) => Ok(None),
        }
    }
}

fn api_key_value(value: &HeaderValue) -> Result<String, ApiError> {
    token(value).ok_or_else(|| ApiError::Unauthorized("X-API-Key header is empty or not a valid key".to_string()))
}

fn bearer_value(value: &HeaderValue) -> Result<String, ApiError> {
    let malformed =
        || ApiError::Unauthorized("malformed Authorization header; expected `Bearer <api key>`".to_string());
    let text = value.to_str().map_err(|_| malformed())?.trim();
    let (scheme, rest) = text.split_once(' ').ok_or_else(malformed)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(malformed());
    }
    let key = rest.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(malformed());
    }
    Ok(key.to_string())
}

/// A trimmed, non-empty header value made of visible ASCII without spaces.
fn token(value: &HeaderValue) -> Option<String> {
    let text = value.to_str().ok()?.trim();
    let valid = !text.is_empty() && text.bytes().all(|b| b.is_ascii_graphic());
    valid.then(|| text.to_string())
}

/// 403 if `X-Tenant-Id` is sent and names a tenant other than the key's.
///
/// The tenant always comes from the key (a client cannot reach another tenant by changing a
/// header); the header is only an assertion we check, so a script pointed at the wrong
/// tenant fails loudly instead of silently acting on the key's tenant. An empty header asserts
/// nothing and is ignored.
pub fn check_tenant_header(headers: &HeaderMap, key_tenant: &str) -> Result<(), ApiError> {
    let Some(value) = headers.get(TENANT_HEADER) else {
        return Ok(());
    };
    let claimed = value.to_str().map(str::trim).unwrap_or("<non-ASCII value>");
    if claimed.is_empty() || claimed == key_tenant {
        return Ok(());
    }
    Err(ApiError::Forbidden(format!(
        "X-Tenant-Id `{claimed}` does not match the tenant of this API key; send the key's tenant id or omit the header"
    )))
}

/// What a key may do; ordered so `role >= Role::Editor` reads as "at least editor".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Read-only access.
    Viewer,
    /// Create and change entities, load rows, publish.
    Editor,
    /// Everything, including keys, rules, policies and rollback.
    Admin,
}

impl Role {
    /// The lowercase name used in JSON and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Admin => "admin",
        }
    }
}

/// What the server knows about a key (never the key itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeyRecord {
    /// The one tenant this key acts for.
    pub tenant_id: String,
    /// What the key may do.
    pub role: Role,
    /// A human label ("ci", "admin (first run)").
    pub name: String,
    /// RFC 3339 creation time.
    pub created_at: String,
}

impl KeyRecord {
    /// 403 unless this key's role is at least `required`.
    pub fn require(&self, required: Role) -> Result<(), ApiError> {
        if self.role >= required {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "this action needs the {} role; the API key has {}",
                required.as_str(),
                self.role.as_str()
            )))
        }
    }
}

/// All known keys, by hash, for every tenant.
///
/// A `DashMap` because every request reads it and only key creation writes it; shards keep
/// readers from contending.
///
/// Lookup is a hash-map probe, which is not constant-time in the probed value. That is safe
/// here: the map key is `HMAC(pepper, presented key)`, so an attacker's timing measurements
/// are about HMAC outputs of their own guesses. Learning that such an output shares a prefix
/// (or a bucket) with a stored hash does not help construct a key that hashes to it without
/// the pepper, and HMAC outputs of successive guesses are unrelated. A constant-time scan over
/// all keys would add latency to every request for no gain.
pub struct KeyIndex {
    pepper: Vec<u8>,
    by_hash: DashMap<[u8; 32], KeyRecord>,
    /// The hashes of keys recently presented and found, so a client sending the same key on
    /// every request does not pay an HMAC each time. Only known keys enter; the record is
    /// still looked up by hash, so a removed key stops working at once.
    recent: DashMap<Box<str>, [u8; 32]>,
}

/// Keys remembered in `KeyIndex::recent`; past this the memory is cleared and refilled.
const RECENT_KEYS: usize = 10_000;

/// Hand-written so the pepper never reaches a log line through `{:?}`.
impl std::fmt::Debug for KeyIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyIndex").field("keys", &self.by_hash.len()).field("pepper", &"<redacted>").finish()
    }
}

impl KeyIndex {
    /// An empty index hashing with `pepper`.
    pub fn new(pepper: impl Into<Vec<u8>>) -> Self {
        KeyIndex { pepper: pepper.into(), by_hash: DashMap::new(), recent: DashMap::new() }
    }

    /// The stored form of `key` under this index's pepper.
    pub fn hash(&self, key: &str) -> [u8; 32] {
        hash_key(&self.pepper, key)
    }

    /// Registers `key` (hashing it; the key itself is not kept). Returns the hash to persist.
    pub fn insert(&self, key: &str, record: KeyRecord) -> [u8; 32] {
        let hash = self.hash(key);
        self.insert_hash(hash, record);
        hash
    }

    /// Registers an already-hashed key (loading persisted keys at startup).
    pub fn insert_hash(&self, hash: [u8; 32], record: KeyRecord) {
        self.by_hash.insert(hash, record);
    }

    /// Forgets a key by hash; returns its record if it existed.
    pub fn remove_hash(&self, hash: &[u8; 32]) -> Option<KeyRecord> {
        self.by_hash.remove(hash).map(|(_, record)| record)
    }

    /// The record of `key`, if it is known.
    pub fn lookup(&self, key: &str) -> Option<KeyRecord> {
        if let Some(hash) = self.recent.get(key).map(|h| *h) {
            return self.by_hash.get(&hash).map(|entry| entry.value().clone());
        }
        let hash = self.hash(key);
        let record = self.by_hash.get(&hash).map(|entry| entry.value().clone())?;
        if self.recent.len() >= RECENT_KEYS {
            self.recent.clear();
        }
        self.recent.insert(key.into(), hash);
        Some(record)
    }

    /// How many keys are registered.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// True when no key is registered.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// The key record for a request: 401 when no key is sent or the key is unknown, 403 when
    /// `X-Tenant-Id` contradicts the key's tenant.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<KeyRecord, ApiError> {
        let key = Credentials::from_headers(headers)?.ok_or_else(|| {
            ApiError::Unauthorized("missing API key; send `X-API-Key: <key>` or `Authorization: Bearer <key>`".into())
        })?;
        let record = self.lookup(&key).ok_or_else(|| {
            ApiError::Unauthorized("unknown API key; check the value sent in X-API-Key (or Authorization)".into())
        })?;
        check_tenant_header(headers, &record.tenant_id)?;
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex_hmac(key: &[u8], message: &[u8]) -> String {
        to_hex(&hmac_sha256(key, message))
    }

    #[test]
    fn hmac_matches_rfc4231_test_cases() {
        // Case 1: 20-byte key of 0x0b.
        assert_eq!(
            hex_hmac(&[0x0b; 20], b"Hi There"),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
        );
        // Case 2: key shorter than the output.
        assert_eq!(
            hex_hmac(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Case 6: key longer than the block, hashed first.
        assert_eq!(
            hex_hmac(&[0xaa; 131], b"Test Using Larger Than Block-Size Key - Hash Key First"),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    /// A key found once is remembered (no HMAC next time); removing it takes effect at
    /// once; unknown keys are not remembered.
    #[test]
    fn remembered_keys_still_honour_removal() {
        let index = KeyIndex::new("pepper");
        let record =
            KeyRecord { tenant_id: "t".into(), role: Role::Viewer, name: "k".into(), created_at: String::new() };
        let hash = index.insert("arb_known", record);
        assert!(index.lookup("arb_known").is_some());
        assert!(index.lookup("arb_known").is_some(), "from the remembered hash");
        assert!(index.lookup("arb_unknown").is_none());
        assert_eq!(index.recent.len(), 1);
        index.remove_hash(&hash);
        assert!(index.lookup("arb_known").is_none());
    }

    #[test]
    fn generated_keys_are_prefixed_hex_and_distinct() {
        let a = generate_key();
        let b = generate_key();
        assert_ne!(a, b);
        let hex = a.strip_prefix(KEY_PREFIX).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()));
        assert_ne!(fallback_random(), fallback_random());
    }

    #[test]
    fn hashes_depend_on_pepper_and_verify_compares() {
        let key = "arb_0123";
        let a = hash_key(b"pepper-1", key);
        assert!(verify(&a, &hash_key(b"pepper-1", key)));
        assert!(!verify(&a, &hash_key(b"pepper-2", key)));
        assert!(!verify(&a, &hash_key(b"pepper-1", "arb_0124")));
    }

    /// Header name/value pairs, as test tables write them.
    type Pairs<'a> = &'a [(&'a str, &'a str)];

    fn headers(pairs: Pairs<'_>) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(hyper::header::HeaderName::from_bytes(name.as_bytes()).unwrap(), value.parse().unwrap());
        }
        map
    }

    #[test]
    fn credentials_from_either_header() {
        let cases: [(Pairs<'_>, Option<&str>); 6] = [
            (&[], None),
            (&[("x-api-key", "arb_1")], Some("arb_1")),
            (&[("authorization", "Bearer arb_2")], Some("arb_2")),
            (&[("authorization", "bearer   arb_3 ")], Some("arb_3")),
            (&[("x-api-key", "arb_4"), ("authorization", "Bearer arb_4")], Some("arb_4")),
            (&[("x-api-key", "arb_5"), ("authorization", "Basic dXNlcg==")], Some("arb_5")),
        ];
        for (pairs, expected) in cases {
            let got = Credentials::from_headers(&headers(pairs)).unwrap();
            assert_eq!(got.as_deref(), expected, "{pairs:?}");
        }
    }

    #[test]
    fn malformed_credentials_are_401() {
        let cases: [Pairs<'_>; 6] = [
            &[("authorization", "arb_1")],
            &[("authorization", "Basic dXNlcg==")],
            &[("authorization", "Bearer")],
            &[("authorization", "Bearer a b")],
            &[("x-api-key", " ")],
            &[("x-api-key", "arb_1"), ("authorization", "Bearer arb_2")],
        ];
        for pairs in cases {
            let error = Credentials::from_headers(&headers(pairs)).unwrap_err();
            assert_eq!(error.code(), "UNAUTHORIZED", "{pairs:?}");
        }
    }

    #[test]
    fn tenant_header_must_match_when_present() {
        assert!(check_tenant_header(&headers(&[]), "t1").is_ok());
        assert!(check_tenant_header(&headers(&[("x-tenant-id", "t1")]), "t1").is_ok());
        assert!(check_tenant_header(&headers(&[("x-tenant-id", "")]), "t1").is_ok());
        let error = check_tenant_header(&headers(&[("x-tenant-id", "t2")]), "t1").unwrap_err();
        assert_eq!(error.code(), "FORBIDDEN");
        assert!(error.message().contains("`t2`"), "{}", error.message());
    }

    fn record(tenant: &str, role: Role) -> KeyRecord {
        KeyRecord { tenant_id: tenant.into(), role, name: "test".into(), created_at: "2024-01-01T00:00:00Z".into() }
    }

    #[test]
    fn key_index_authenticates() {
        let index = KeyIndex::new(b"pepper".to_vec());
        let key = generate_key();
        let hash = index.insert(&key, record("t1", Role::Editor));
        assert_eq!(hash, hash_key(b"pepper", &key));
        assert_eq!(index.len(), 1);
        assert_eq!(index.lookup(&key).unwrap().tenant_id, "t1");
        assert!(index.lookup("arb_other").is_none());

        let ok = index.authenticate(&headers(&[("x-api-key", &key), ("x-tenant-id", "t1")])).unwrap();
        assert_eq!(ok.role, Role::Editor);
        let missing = index.authenticate(&headers(&[])).unwrap_err();
        assert!(missing.message().contains("X-API-Key"), "{}", missing.message());
        let unknown = index.authenticate(&headers(&[("authorization", "Bearer arb_nope")])).unwrap_err();
        assert_eq!(unknown.code(), "UNAUTHORIZED");
        let wrong_tenant = index.authenticate(&headers(&[("x-api-key", &key), ("x-tenant-id", "t2")])).unwrap_err();
        assert_eq!(wrong_tenant.code(), "FORBIDDEN");

        assert_eq!(format!("{index:?}"), r#"KeyIndex { keys: 1, pepper: "<redacted>" }"#);
        assert!(index.remove_hash(&hash).is_some());
        assert!(index.is_empty());
    }

    #[test]
    fn roles_serialize_lowercase_and_order() {
        let json = serde_json::to_value(record("t", Role::Admin)).unwrap();
        assert_eq!(json["role"], "admin");
        assert_eq!(json["tenantId"], "t");
        assert_eq!(json["createdAt"], "2024-01-01T00:00:00Z");
        let back: KeyRecord = serde_json::from_value(json).unwrap();
        assert_eq!(back.role, Role::Admin);
        assert!(record("t", Role::Admin).require(Role::Editor).is_ok());
        let error = record("t", Role::Viewer).require(Role::Editor).unwrap_err();
        assert_eq!(error.message(), "this action needs the editor role; the API key has viewer");
    }
}
