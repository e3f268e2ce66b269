//! Identifiers and timestamps.
//!
//! Ids are random-looking UUID-shaped strings from a splitmix64 stream seeded by the
//! clock and process id: unique without a random-number crate, and cheap enough to mint
//! two per decision.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

fn seed() -> u64 {
    static SEED: OnceLock<u64> = OnceLock::new();
    *SEED.get_or_init(|| {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        nanos ^ (u64::from(std::process::id()) << 32)
    })
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A new UUID-v4-shaped id.
pub fn new_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(2, Ordering::Relaxed);
    let (hi, lo) = (splitmix(seed() ^ n), splitmix(seed().rotate_left(17) ^ (n + 1)));
    let hi = (hi & 0xFFFF_FFFF_FFFF_0FFF) | 0x0000_0000_0000_4000;
    let lo = (lo & 0x3FFF_FFFF_FFFF_FFFF) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xFFFF,
        hi & 0xFFFF,
        lo >> 48,
        lo & 0xFFFF_FFFF_FFFF
    )
}

/// This node's tag in a cluster (0 on a single node): the first part of the ids of the
/// decisions it logs, so that every node's ids are distinct.
static NODE_TAG: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

pub fn node_tag() -> u32 {
    NODE_TAG.load(Ordering::Relaxed)
}

/// Sets [`node_tag`] from the node's name, once, when the node joins its cluster (before
/// any decision is logged). Never 0.
pub fn set_node_tag(node_id: &str) -> u32 {
    let tag = (fnv1a_pair("arbiter-node", node_id) as u32).max(1);
    NODE_TAG.store(tag, Ordering::Relaxed);
    tag
}

/// FNV-1a over `a:b`, without building the joined string.
pub fn fnv1a_pair(a: &str, b: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in a.bytes().chain(std::iter::once(b':')).chain(b.bytes()) {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Current UTC time as RFC 3339 with milliseconds.
pub fn unix_now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// 32 bits from the id stream.
pub fn random_u32() -> u32 {
    static COUNTER: AtomicU64 = AtomicU64::new(1 << 40);
    (splitmix(seed() ^ COUNTER.fetch_add(1, Ordering::Relaxed)) >> 32) as u32
}

/// Milliseconds since the Unix epoch.
pub fn unix_now_millis() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

pub fn now_rfc3339() -> String {
    let d = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    rfc3339(d.as_secs() as i64, d.subsec_millis())
}

pub fn rfc3339(secs: i64, millis: u32) -> String {
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// (year, month, day) to days since 1970-01-01; the inverse of [`civil_from_days`].
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses the RFC 3339 UTC timestamps this crate writes (`2026-11-23T12:00:00.000Z`,
/// fraction optional) to Unix seconds.
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| s.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || hh > 23 || mm > 59 || ss > 60 || !s.ends_with('Z') {
        return None;
    }
    Some(days_from_civil(y, m as u32, d as u32) * 86_400 + hh * 3600 + mm * 60 + ss)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique_and_uuid_shaped() {
        let (a, b) = (new_id(), new_id());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
    }

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(1_709_251_199, 5), "2024-02-29T23:59:59.005Z");
    }

    #[test]
    fn parses_what_it_formats() {
        for secs in [0, 951_782_400, 1_709_251_199, 1_795_392_000, 4_102_444_799] {
            assert_eq!(parse_rfc3339(&rfc3339(secs, 7)), Some(secs), "{secs}");
        }
        assert_eq!(parse_rfc3339("2026-11-23T12:00:00Z"), Some(1_795_392_000 + 43_200));
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn fnv_matches_reference() {
        // Reference value from a direct FNV-1a 64 of the bytes "cross-sell:cust_42".
        assert_eq!(fnv1a_pair("cross-sell", "cust_42"), 0x513a_6c7c_ebd9_0fce);
    }
}
