//! Documents that decisions' receipts name by digest (`catalog::retained`): what each
//! live flow was compiled from, and each trained set of uplift models. They are kept
//! in sled under `retained/{digest}`, written once per distinct content (a change or a
//! training that comes out the same writes nothing), before the flow or the models go
//! live. A document nothing live uses any more is marked retired, and dropped once it
//! has been retired longer than the event log's retention: no decision still in the
//! log can name it.
//!
//! They are this node's own records, not replicated: every node compiles the same
//! catalog into the same documents, and trains its own models.

use std::collections::HashSet;

use crate::catalog::retained::{hex, Digest};
use crate::store::keys::{self, Kind};
use crate::store::{Batch, Storage, StoreError};

fn key(tenant: &str, d: &Digest) -> Vec<u8> {
    keys::key(tenant, Kind::Retained, &[&hex(d)])
}

fn retired_key(tenant: &str, d: &Digest) -> Vec<u8> {
    keys::key(tenant, Kind::Retained, &[&hex(d), "retired"])
}

/// Keeps each `(digest, document)` not kept yet, durably (a flush), and clears a
/// retirement (a document live again). `make` builds a document only when it is needed.
pub fn keep(
    store: &dyn Storage,
    tenant: &str,
    digests: impl IntoIterator<Item = Digest>,
    make: impl Fn(&Digest) -> Option<Vec<u8>>,
) -> Result<(), StoreError> {
    let mut b = Batch::new();
    for d in digests {
        if d == [0; 16] {
            continue;
        }
        if store.get(&retired_key(tenant, &d))?.is_some() {
            b.delete(retired_key(tenant, &d));
        }
        if store.get(&key(tenant, &d))?.is_none() {
            if let Some(bytes) = make(&d) {
                b.put(key(tenant, &d), bytes);
            }
        }
    }
    if b.is_empty() {
        return Ok(());
    }
    store.write_unacknowledged(b)?;
    store.flush()
}

/// A retained document, if it is still kept.
pub fn load(store: &dyn Storage, tenant: &str, d: &Digest) -> Result<Option<Vec<u8>>, StoreError> {
    store.get(&key(tenant, d))
}

/// Marks documents nothing in `live` uses as retired (now), and drops those retired
/// for longer than `retention_secs`. Returns how many were dropped.
pub fn sweep(
    store: &dyn Storage,
    tenant: &str,
    live: &HashSet<Digest>,
    now: i64,
    retention_secs: i64,
) -> Result<usize, StoreError> {
    let mut b = Batch::new();
    let mut dropped = 0;
    let records = store.scan_prefix(&keys::prefix(tenant, Kind::Retained))?;
    for (k, _) in records.iter().filter(|(k, _)| !k.ends_with(b"/retired")) {
        let Some(d) = keys::last_component(k).and_then(|h| parse_hex(&h)) else { continue };
        if live.contains(&d) {
            continue;
        }
        let retired = store.get(&retired_key(tenant, &d))?;
        match retired.and_then(|v| std::str::from_utf8(&v).ok()?.parse::<i64>().ok()) {
            None => {
                b.put(retired_key(tenant, &d), now.to_string());
            }
            Some(at) if now - at > retention_secs => {
                b.delete(k.clone());
                b.delete(retired_key(tenant, &d));
                dropped += 1;
            }
            Some(_) => {}
        }
    }
    if !b.is_empty() {
        store.write_unacknowledged(b)?;
    }
    Ok(dropped)
}

pub fn parse_hex(h: &str) -> Option<Digest> {
    if h.len() != 32 {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(h.get(i * 2..i * 2 + 2)?, 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_is_kept_once_retired_when_unused_and_dropped_after_retention() {
        let store = crate::store::SledStore::temporary().unwrap();
        let (a, b) = ([1u8; 16], [2u8; 16]);
        keep(&store, "t", [a, b], |d| Some(vec![d[0]])).unwrap();
        assert_eq!(load(&store, "t", &a).unwrap(), Some(vec![1]));
        // Kept once: a second keep does not build the document again.
        keep(&store, "t", [a], |_| panic!("already kept")).unwrap();
        let live: HashSet<Digest> = [a].into();
        assert_eq!(sweep(&store, "t", &live, 1_000, 100).unwrap(), 0, "b is retired, not dropped");
        assert_eq!(sweep(&store, "t", &live, 1_050, 100).unwrap(), 0, "within retention");
        assert_eq!(sweep(&store, "t", &live, 1_101, 100).unwrap(), 1);
        assert_eq!(load(&store, "t", &b).unwrap(), None);
        assert_eq!(load(&store, "t", &a).unwrap(), Some(vec![1]), "live documents stay");
        // Live again before it is dropped: the retirement is cleared.
        sweep(&store, "t", &HashSet::new(), 2_000, 100).unwrap();
        keep(&store, "t", [a], |_| None).unwrap();
        assert_eq!(sweep(&store, "t", &HashSet::new(), 2_500, 100).unwrap(), 0, "retired afresh at 2500");
        assert_eq!(parse_hex(&hex(&a)), Some(a));
    }
}
