//! Checkpoints of the state derived from the event log — propensity counters, contact
//! histories, experiment aggregates, idempotency keys and each customer's recent
//! decision ids, for every tenant — so a start
//! replays only the log after the last one.
//!
//! * **Exact.** A checkpoint is the state of all records before a log position, computed
//!   from the log itself, never copied from the live state while requests change it: at
//!   start (nothing else runs yet) and by the checkpoint thread, which folds each newly
//!   closed segment into the last checkpoint (loaded, replayed onto, saved: its memory is
//!   freed in between). The state is rebuilt the same way whichever path made it.
//! * **Cheap to take.** Folding costs one replay of the new segment (~2–3 µs a decision)
//!   off the request path; a start replays at most the segments written since the last
//!   fold — the current run's open segment and whatever the last run left unfolded.
//! * **Derived, not primary.** A missing or damaged checkpoint (or one of another format)
//!   only costs time: the whole log is replayed instead. Retention may drop segments a
//!   checkpoint already holds the effect of: the aggregates keep counting them.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::experiment::Seen;
use super::idempotency::Keyed;
use super::interaction::{each_legacy_decision, each_legacy_response, response_record, DecisionId};
use super::learning::{Learning, Replay};
use crate::engine::contact::{Contact, OutcomeEvent};
use crate::learn::propensity::{CounterBank, CounterSnapshot};
use crate::store::eventlog::{EventStore, Position};
use crate::store::keys::{self, Kind};
use crate::store::{Batch, Storage, StoreError};

/// Bumped when the layout changes. Formats 3 (decision ids without their node) and 4
/// (no outcomes or impressions) are read as this one: their counters, contacts and keys
/// may be all that is left of segments retention has dropped, so they are never thrown
/// away. Outcomes and impressions recorded before such a checkpoint are not in it; only
/// the records after it add them. Any other format is ignored and the log replayed.
const FORMAT: u32 = 5;
const FORMAT_WITHOUT_OUTCOMES: u32 = 4;
const FORMAT_WITHOUT_NODES: u32 = 3;

#[derive(Serialize, Deserialize)]
struct Checkpoint<D = DecisionRecord> {
    format: u32,
    /// Every record before this position is in the state below.
    next: Position,
    tenants: Vec<(String, TenantState<D>)>,
}

/// One tenant's derived state. Contacts name offers, categories and channels by index into
/// `names`: a history is mostly the same few strings.
#[derive(Serialize, Deserialize)]
struct TenantState<D = DecisionRecord> {
    counters: CounterSnapshot,
    experiments: Vec<(String, Vec<(String, Seen)>)>,
    names: Vec<String>,
    /// Per customer, its contacts.
    contacts: Vec<(String, Vec<ContactRecord>)>,
    keys: Vec<Keyed>,
    /// Per customer, its logged decisions, oldest first.
    recent: Vec<(String, Vec<D>)>,
    /// Per customer, its recorded outcomes, oldest first.
    outcomes: Vec<(String, Vec<OutcomeRecord>)>,
    /// Per offer, its impressions in the periods they were last counted in.
    impressions: Vec<(String, super::impressions::Counts)>,
}

/// An outcome: (at, offer, category, outcome), names by index.
type OutcomeRecord = (i64, u32, u32, u32);

/// Formats 3 and 4: a tenant's state before outcomes and impressions were kept.
#[derive(Serialize, Deserialize)]
struct LegacyState<D> {
    counters: CounterSnapshot,
    experiments: Vec<(String, Vec<(String, Seen)>)>,
    names: Vec<String>,
    contacts: Vec<(String, Vec<ContactRecord>)>,
    keys: Vec<Keyed>,
    recent: Vec<(String, Vec<D>)>,
}

#[derive(Serialize, Deserialize)]
struct Legacy<D> {
    format: u32,
    next: Position,
    tenants: Vec<(String, LegacyState<D>)>,
}

impl<D> Legacy<D> {
    /// As this format, each decision id made whole by `id`.
    fn upgrade(self, id: impl Fn(D) -> DecisionRecord) -> Checkpoint {
        let tenants = self.tenants.into_iter().map(|(tenant, t)| {
            let recent = t.recent.into_iter().map(|(c, ids)| (c, ids.into_iter().map(&id).collect()));
            let state = TenantState {
                counters: t.counters,
                experiments: t.experiments,
                names: t.names,
                contacts: t.contacts,
                keys: t.keys,
                recent: recent.collect(),
                outcomes: Vec::new(),
                impressions: Vec::new(),
            };
            (tenant, state)
        });
        Checkpoint { format: FORMAT, next: self.next, tenants: tenants.collect() }
    }
}

/// A contact: (at, offer, category, channel or `NO_CHANNEL`), names by index.
type ContactRecord = (i64, u32, u32, u32);

const NO_CHANNEL: u32 = u32::MAX;

/// A logged decision's id: (node, segment, offset, nonce).
type DecisionRecord = (u32, u32, u32, u32);

impl TenantState {
    fn of(l: &Learning) -> TenantState {
        let mut index: HashMap<Arc<str>, u32> = HashMap::new();
        let mut names = Vec::new();
        let mut name = |s: &Arc<str>| {
            *index.entry(s.clone()).or_insert_with(|| {
                names.push(s.to_string());
                (names.len() - 1) as u32
            })
        };
        let contacts = l
            .contacts
            .iter()
            .map(|e| {
                let h = e.value().iter().map(|c| {
                    let channel = c.channel.as_ref().map_or(NO_CHANNEL, &mut name);
                    (c.at, name(&c.offer_id), name(&c.category), channel)
                });
                (e.key().to_string(), h.collect())
            })
            .collect();
        let outcomes = l
            .outcomes
            .iter()
            .map(|e| {
                let h = e.value().iter().map(|o| (o.at, name(&o.offer_id), name(&o.category), name(&o.outcome)));
                (e.key().to_string(), h.collect())
            })
            .collect();
        TenantState {
            outcomes,
            impressions: l.impressions.export(),
            counters: l.counters.snapshot(),
            experiments: l.experiments.export(),
            names,
            contacts,
            keys: l.keys.lock().entries().copied().collect(),
            recent: l
                .recent
                .iter()
                .map(|e| {
                    (
                        e.key().to_string(),
                        e.value().iter().map(|d| (d.node, d.at.segment, d.at.offset, d.nonce)).collect(),
                    )
                })
                .collect(),
        }
    }

    /// Adds this state to `l` (a tenant's state before any record is applied).
    fn install(self, l: &Learning) {
        l.counters.add(&self.counters);
        for (flow, customers) in self.experiments {
            l.experiments.import(&flow, customers);
        }
        let names: Vec<Arc<str>> = self.names.into_iter().map(Into::into).collect();
        let name = |i: u32| names.get(i as usize).cloned().unwrap_or_else(|| "".into());
        for (customer, history) in self.contacts {
            let history = history.into_iter().map(|(at, offer, category, channel)| Contact {
                at,
                offer_id: name(offer),
                category: name(category),
                channel: (channel != NO_CHANNEL).then(|| name(channel)),
            });
            l.contacts.insert(customer.into(), history.collect());
        }
        for (offer, counts) in self.impressions {
            l.impressions.import(offer, counts);
        }
        for (customer, history) in self.outcomes {
            let history = history.into_iter().map(|(at, offer, category, outcome)| OutcomeEvent {
                at,
                offer_id: name(offer),
                category: name(category),
                outcome: name(outcome),
            });
            l.outcomes.insert(customer.into(), history.collect());
        }
        for (customer, ids) in self.recent {
            let ids = ids.into_iter().map(|(node, segment, offset, nonce)| DecisionId {
                node,
                at: Position { segment, offset },
                nonce,
            });
            l.recent.insert(customer.into(), ids.collect());
        }
        let mut keys = l.keys.lock();
        for k in self.keys {
            keys.insert(k.digest, k.at, k.recorded_ms);
        }
    }
}

/// A checkpoint of this format, or of format 3 or 4 read as this one; `None` for anything else.
fn decode(bytes: &[u8]) -> Option<Checkpoint> {
    match postcard::take_from_bytes::<u32>(bytes).ok()?.0 {
        FORMAT => postcard::from_bytes::<Checkpoint>(bytes).ok(),
        FORMAT_WITHOUT_OUTCOMES => postcard::from_bytes::<Legacy<DecisionRecord>>(bytes).ok().map(|c| c.upgrade(|d| d)),
        // Format 3's decisions were logged on a single node: node 0.
        FORMAT_WITHOUT_NODES => {
            postcard::from_bytes::<Legacy<(u32, u32, u32)>>(bytes).ok().map(|c| c.upgrade(|(s, o, n)| (0, s, o, n)))
        }
        _ => None,
    }
}

fn load(events: &dyn EventStore) -> Result<Option<Checkpoint>, StoreError> {
    let Some(bytes) = events.load_checkpoint()? else { return Ok(None) };
    match decode(&bytes) {
        Some(c) => Ok(Some(c)),
        None => {
            tracing::warn!("the event log's checkpoint is of another format; the whole log is replayed instead");
            Ok(None)
        }
    }
}

fn save(events: &dyn EventStore, next: Position, tenants: &[(&str, &Learning)]) -> Result<usize, StoreError> {
    let checkpoint = Checkpoint {
        format: FORMAT,
        next,
        tenants: tenants.iter().map(|(id, l)| (id.to_string(), TenantState::of(l))).collect(),
    };
    let bytes = postcard::to_allocvec(&checkpoint).expect("a checkpoint serialises");
    events.save_checkpoint(&bytes)?;
    Ok(bytes.len())
}

/// Adds a checkpoint's state to the tenants it has (others' is dropped); returns where the
/// log goes on from it.
fn install(c: Checkpoint, tenants: &[(&str, &Learning)]) -> Position {
    let by_id: HashMap<&str, &Learning> = tenants.iter().copied().collect();
    for (id, state) in c.tenants {
        if let Some(l) = by_id.get(id.as_str()) {
            state.install(l);
        }
    }
    c.next
}

/// Applies the records from `from` to the end of segment `until − 1` (all of them with
/// `u32::MAX`).
fn replay(events: &dyn EventStore, replay: &mut Replay<'_>, from: Position, until: u32) -> Result<(), StoreError> {
    events.replay(from.segment..until, &mut |at, payload| {
        if at >= from {
            replay.record(at, payload);
        }
    })
}

/// Rebuilds every tenant's learned state before the tenants take traffic — from the last
/// checkpoint and the log after it, or, without one, from what earlier versions kept in
/// sled and the whole log. Without a checkpoint it saves one at the end of the log (the
/// checkpoint thread folds only onto one); with one, the thread folds the replayed tail
/// in the background, so a start does not wait for that write.
pub fn restore_all(store: &dyn Storage, tenants: &[(&str, &Learning)]) -> Result<(), StoreError> {
    let events = store.events();
    let started = std::time::Instant::now();
    let checkpoint = load(events)?;
    let loaded_ms = started.elapsed().as_millis() as u64;
    let from_checkpoint = checkpoint.is_some();
    if !from_checkpoint {
        for (id, _) in tenants {
            move_legacy_responses(store, id)?;
        }
    }
    let mut replay = Replay::new(tenants);
    let from = match checkpoint {
        Some(c) => install(c, tenants),
        None => {
            for (id, _) in tenants {
                each_legacy_decision(store, id, |i| replay.legacy_decision(id, i))?;
            }
            Position { segment: 0, offset: 0 }
        }
    };
    let installed_ms = started.elapsed().as_millis() as u64;
    self::replay(events, &mut replay, from, u32::MAX)?;
    replay.finish();
    let replayed_ms = started.elapsed().as_millis() as u64;
    if !from_checkpoint {
        save(events, events.end(), tenants)?;
    }
    tracing::info!(
        from_checkpoint,
        replayed_from = ?from,
        loaded_ms,
        installed_ms,
        replayed_ms,
        ms = started.elapsed().as_millis() as u64,
        "learned state restored"
    );
    Ok(())
}

/// Folds the segments closed since the last checkpoint into it (the checkpoint thread's
/// step). `tenants` are the ids of every tenant now. Returns whether there was anything.
pub fn fold_closed(events: &dyn EventStore, tenants: &[String]) -> Result<bool, StoreError> {
    let closed = Position { segment: events.end().segment, offset: 0 };
    let Some(checkpoint) = load(events)? else { return Ok(false) };
    let from = checkpoint.next;
    if from >= closed {
        return Ok(false);
    }
    let ids: BTreeSet<String> =
        tenants.iter().cloned().chain(checkpoint.tenants.iter().map(|(id, _)| id.clone())).collect();
    let states: Vec<(String, Learning)> =
        ids.into_iter().map(|id| (id, Learning::new(Arc::new(CounterBank::default())))).collect();
    let tenants: Vec<(&str, &Learning)> = states.iter().map(|(id, l)| (id.as_str(), l)).collect();
    install(checkpoint, &tenants);
    let mut replaying = Replay::new(&tenants);
    replay(events, &mut replaying, from, closed.segment)?;
    replaying.finish();
    let bytes = save(events, closed, &tenants)?;
    tracing::info!(through_segment = closed.segment - 1, checkpoint_bytes = bytes, "event log checkpointed");
    Ok(true)
}

/// Moves the responses an earlier version kept in sled into the event log (once, before
/// the first checkpoint): appended and synced, then removed from sled with their
/// idempotency records. A crash in between leaves some twice in the log; a replay counts
/// a key once, so that is harmless.
fn move_legacy_responses(store: &dyn Storage, tenant: &str) -> Result<(), StoreError> {
    let mut moved = Batch::new();
    let now_ms = crate::ids::unix_now_millis();
    each_legacy_response(store, tenant, |key, r| {
        if let Err(e) = store.events().append(&response_record(tenant, &r, now_ms), false) {
            tracing::error!(tenant, error = %e, "could not move a stored response to the event log");
            return;
        }
        moved.delete(key.to_vec());
        moved.delete(keys::key(tenant, Kind::Idem, &[&r.idempotency_key]));
    })?;
    if moved.is_empty() {
        return Ok(());
    }
    store.events().barrier().wait()?;
    let count = moved.len() / 2;
    store.write(moved)?.wait()?;
    tracing::info!(tenant, responses = count, "moved the responses kept in sled to the event log");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy(format: u32) -> Vec<u8> {
        let state = LegacyState {
            counters: CounterBank::default().snapshot(),
            experiments: Vec::new(),
            names: Vec::new(),
            contacts: Vec::new(),
            keys: Vec::new(),
            recent: vec![("cust_42".to_string(), vec![(0u32, 1u32, 64u32, 0xfeedu32)])],
        };
        let next = Position { segment: 2, offset: 0 };
        if format == FORMAT_WITHOUT_NODES {
            let recent = vec![("cust_42".to_string(), vec![(1u32, 64u32, 0xfeedu32)])];
            let LegacyState { counters, experiments, names, contacts, keys, .. } = state;
            let state = LegacyState { counters, experiments, names, contacts, keys, recent };
            let old = Legacy { format, next, tenants: vec![("acme".to_string(), state)] };
            return postcard::to_allocvec(&old).unwrap();
        }
        postcard::to_allocvec(&Legacy { format, next, tenants: vec![("acme".to_string(), state)] }).unwrap()
    }

    /// This format reads back; formats 3 and 4 read as it, with nothing lost (format 3's
    /// decisions a single node's); any other is not read, so the log is replayed.
    #[test]
    fn this_format_and_the_two_before_it_are_read() {
        let state = TenantState {
            counters: CounterBank::default().snapshot(),
            experiments: Vec::new(),
            names: vec!["o1".into(), "cards".into(), "not_interested".into()],
            contacts: Vec::new(),
            keys: Vec::new(),
            recent: vec![("cust_42".to_string(), vec![(0u32, 1u32, 64u32, 0xfeedu32)])],
            outcomes: vec![("cust_42".to_string(), vec![(1_700_000_000, 0, 1, 2)])],
            impressions: Vec::new(),
        };
        let next = Position { segment: 2, offset: 0 };
        let current = Checkpoint { format: FORMAT, next, tenants: vec![("acme".to_string(), state)] };
        let read = decode(&postcard::to_allocvec(&current).unwrap()).expect("this format is read");
        assert_eq!(read.tenants[0].1.outcomes, current.tenants[0].1.outcomes);
        assert_eq!(read.tenants[0].1.recent, current.tenants[0].1.recent);
        for format in [FORMAT_WITHOUT_OUTCOMES, FORMAT_WITHOUT_NODES] {
            let read = decode(&legacy(format)).unwrap_or_else(|| panic!("format {format} is read"));
            assert_eq!((read.format, read.next), (FORMAT, next));
            assert_eq!(read.tenants[0].1.recent, vec![("cust_42".to_string(), vec![(0, 1, 64, 0xfeed)])], "{format}");
            assert!(read.tenants[0].1.outcomes.is_empty());
        }
        let other = Checkpoint { format: 2, ..current };
        assert!(decode(&postcard::to_allocvec(&other).unwrap()).is_none());
    }
}
