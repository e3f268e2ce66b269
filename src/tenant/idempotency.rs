//! A tenant's idempotency keys: which response each recent key recorded, as the position
//! of its event-log record, so a replay answers with the first result after one read.
//!
//! Kept in memory and rebuilt from the log (or a checkpoint) at start. A key is a 128-bit
//! digest of what the client sent, so the index costs the same whatever the keys' length.
//! It remembers every key for at least [`KEY_WINDOW_MS`], and at most the tenant's last
//! [`MAX_KEYS`] keyed responses: a retry later than that records a second response.

use std::collections::{HashMap, VecDeque};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::store::eventlog::Position;

/// Keys are remembered this long at least (a day, as payment APIs commonly do).
pub const KEY_WINDOW_MS: i64 = 24 * 3_600_000;
/// At most this many keys per tenant (about 60 MB): older ones are forgotten first.
pub const MAX_KEYS: usize = 1_000_000;

pub type KeyDigest = [u8; 16];

/// The digest an idempotency key is indexed by.
pub fn digest(key: &str) -> KeyDigest {
    let full = Sha256::digest(key.as_bytes());
    full[..16].try_into().expect("16 of 32 bytes")
}

/// One key: its digest, its response's record and when that was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Keyed {
    pub digest: KeyDigest,
    pub at: Position,
    pub recorded_ms: i64,
}

/// The index: digest → record, and the keys in the order they were recorded (for
/// forgetting the oldest first).
#[derive(Debug, Default)]
pub struct Keys {
    /// Digest → (record, recorded at).
    by_digest: HashMap<KeyDigest, (Position, i64)>,
    order: VecDeque<Keyed>,
}

impl Keys {
    /// Where the response recorded under `digest` is, if the key is remembered at `now_ms`.
    pub fn get(&self, digest: &KeyDigest, now_ms: i64) -> Option<Position> {
        let &(at, recorded_ms) = self.by_digest.get(digest)?;
        (now_ms - recorded_ms <= KEY_WINDOW_MS).then_some(at)
    }

    /// Remembers a key; forgets keys past the window or the cap.
    pub fn insert(&mut self, digest: KeyDigest, at: Position, recorded_ms: i64) {
        self.by_digest.insert(digest, (at, recorded_ms));
        self.order.push_back(Keyed { digest, at, recorded_ms });
        while let Some(oldest) = self.order.front().copied() {
            let expired = recorded_ms - oldest.recorded_ms > KEY_WINDOW_MS;
            if !expired && self.order.len() <= MAX_KEYS {
                break;
            }
            self.order.pop_front();
            self.forget(&oldest);
        }
    }

    /// Forgets a key whose response was not recorded after all (its write failed), unless
    /// it names another record by now.
    pub fn remove(&mut self, digest: &KeyDigest, at: Position) {
        if self.by_digest.get(digest).is_some_and(|(a, _)| *a == at) {
            self.by_digest.remove(digest);
        }
    }

    fn forget(&mut self, k: &Keyed) {
        self.remove(&k.digest, k.at);
    }

    /// The remembered keys, oldest first (what a checkpoint keeps).
    pub fn entries(&self) -> impl Iterator<Item = &Keyed> {
        self.order.iter().filter(|k| self.by_digest.get(&k.digest).is_some_and(|(a, _)| *a == k.at))
    }

    pub fn len(&self) -> usize {
        self.by_digest.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_digest.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u32) -> Position {
        Position { segment: 1, offset }
    }

    #[test]
    fn a_key_names_its_record_until_it_is_removed() {
        let mut keys = Keys::default();
        let d = digest("retry-1");
        keys.insert(d, at(8), 1_000);
        assert_eq!(keys.get(&d, 1_000), Some(at(8)));
        keys.remove(&d, at(16));
        assert_eq!(keys.get(&d, 1_000), Some(at(8)), "removing another record's entry leaves this one");
        keys.remove(&d, at(8));
        assert_eq!(keys.get(&d, 1_000), None);
        assert_eq!(keys.entries().count(), 0);
    }

    #[test]
    fn keys_older_than_the_window_are_forgotten_when_new_ones_come() {
        let mut keys = Keys::default();
        keys.insert(digest("old"), at(0), 0);
        keys.insert(digest("recent"), at(8), KEY_WINDOW_MS);
        assert!(keys.get(&digest("old"), KEY_WINDOW_MS).is_some(), "exactly a window old is still remembered");
        assert_eq!(keys.get(&digest("old"), KEY_WINDOW_MS + 1), None, "past the window a key is not answered");
        keys.insert(digest("new"), at(16), KEY_WINDOW_MS + 1);
        assert_eq!(keys.get(&digest("recent"), KEY_WINDOW_MS + 1), Some(at(8)));
        let kept: Vec<Position> = keys.entries().map(|k| k.at).collect();
        assert_eq!(kept, vec![at(8), at(16)], "oldest first");
    }

    #[test]
    fn past_the_cap_the_oldest_keys_are_forgotten() {
        let mut keys = Keys::default();
        for i in 0..=MAX_KEYS as u32 {
            let mut d = [0u8; 16];
            d[..4].copy_from_slice(&i.to_le_bytes());
            keys.insert(d, at(i), 0);
        }
        assert_eq!(keys.len(), MAX_KEYS);
        assert_eq!(keys.get(&[0u8; 16], 0), None, "the first key went");
        assert_eq!(keys.entries().next().map(|k| k.at.offset), Some(1));
    }

    #[test]
    fn digests_differ_for_different_keys() {
        assert_ne!(digest("a"), digest("b"));
        assert_eq!(digest("a"), digest("a"));
    }
}
