//! The event stream: every decision and response a node appends to its log is also
//! published to [`EVENTS_STREAM`] (R3), on the tenant's subject, with the record's id as
//! `Nats-Msg-Id` — the node's tag and the record's position in its log — so a publish
//! retried after a lost acknowledgement is stored once. An append completes (its
//! `Durable`) once JetStream has the record on a quorum, and for an acknowledged append
//! (a response) once the local log has synced it too.
//!
//! Every node mirrors the other nodes' records into its own log, in stream order, each
//! wrapped with its origin (`interaction::mirrored_record`), and indexes where each one
//! landed (`keys::mirrored`), so `/respond` and `GET /interactions/{id}` find another
//! node's decision with an index lookup and one read. Whatever reads the log — a start's replay, checkpoints,
//! reports, training, simulation — reads every node's events, so the state derived from
//! them converges; the live state takes each mirrored record as a start's replay would.
//!
//! The mirror's position is saved (`cluster/events`: the last sequence mirrored and the
//! end of the local log then) only after the log has synced everything before it. A
//! restart re-reads its log from that end, so a record mirrored after the last save is
//! neither lost nor mirrored twice.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use async_nats::HeaderMap;
use futures_util::StreamExt;

use super::{Cluster, ClusterError, EVENTS_PREFIX, EVENTS_STREAM, PUBLISH_TIMEOUT};
use crate::store::eventlog::{EventStore, Position};
use crate::store::{keys, Batch, Durable, Storage, StoreError};
use crate::tenant::interaction::{self, encode_position as position, Origin};

/// Where the mirror is: (last sequence mirrored, end of the local log then).
const MIRROR_KEY: &[u8] = b"cluster/events";
/// The mirror's position is saved at most this often.
const SAVE_EVERY: Duration = Duration::from_millis(200);

/// The node's log, with every append of its own records also published to the stream.
pub struct ReplicatedEvents {
    pub(super) inner: Arc<dyn Storage>,
    pub(super) cluster: Arc<Cluster>,
}

impl ReplicatedEvents {
    fn local(&self) -> &dyn EventStore {
        self.inner.events()
    }
}

/// A record's id in the stream: the node's tag and the record's position in its log.
fn message_id(node: u32, at: Position) -> String {
    format!("{node:08x}{:08x}{:08x}", at.segment, at.offset)
}

fn parse_message_id(id: &str) -> Option<(u32, Position)> {
    let part = |i: usize| id.get(i * 8..(i + 1) * 8).and_then(|p| u32::from_str_radix(p, 16).ok());
    (id.len() == 24).then_some(())?;
    Some((part(0)?, Position { segment: part(1)?, offset: part(2)? }))
}

impl EventStore for ReplicatedEvents {
    fn append(&self, payload: &[u8], acknowledged: bool) -> Result<(Position, Option<Durable>), StoreError> {
        let (at, local) = self.local().append(payload, acknowledged)?;
        let Some(tenant) = interaction::record_tenant(payload) else { return Ok((at, local)) };
        let subject = super::tenant_subject(EVENTS_PREFIX, tenant);
        let id = message_id(self.cluster.tag, at);
        let payload = bytes::Bytes::copy_from_slice(payload);
        let (tx, durable) = Durable::channel();
        let cluster = self.cluster.clone();
        self.cluster.runtime.spawn(async move {
            let mut result = publish(&cluster, subject, id, payload).await;
            if let (Ok(()), Some(local)) = (&result, local) {
                result = local.await;
            }
            let _ = tx.send(result);
        });
        Ok((at, Some(durable)))
    }

    fn barrier(&self) -> Durable {
        self.local().barrier()
    }

    fn read(&self, at: Position) -> Result<Option<Vec<u8>>, StoreError> {
        self.local().read(at)
    }

    fn replay(&self, segments: Range<u32>, each: &mut dyn FnMut(Position, &[u8])) -> Result<(), StoreError> {
        self.local().replay(segments, each)
    }

    fn end(&self) -> Position {
        self.local().end()
    }

    fn segments(&self) -> Result<Vec<u32>, StoreError> {
        self.local().segments()
    }

    fn drop_before(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        self.local().drop_before(cutoff)
    }

    fn save_checkpoint(&self, bytes: &[u8]) -> Result<(), StoreError> {
        self.local().save_checkpoint(bytes)
    }

    fn load_checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.local().load_checkpoint()
    }

    fn syncs(&self) -> u64 {
        self.local().syncs()
    }
}

/// How long one attempt to publish an event waits for its acknowledgement: a publish
/// sent on a connection that just broke is never acknowledged, and is sent again.
const ATTEMPT_TIMEOUT: Duration = Duration::from_millis(750);

/// Publishes one record until JetStream acknowledges it, retrying (the same message id:
/// stored once) while a NATS server fails over or the stream elects a new leader, for at
/// most [`PUBLISH_TIMEOUT`].
async fn publish(cluster: &Cluster, subject: String, id: String, payload: bytes::Bytes) -> Result<(), StoreError> {
    let started = Instant::now();
    loop {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", id.as_str());
        let attempt = async {
            let sent = cluster.js.publish_with_headers(subject.clone(), headers, payload.clone()).await?;
            sent.await
        };
        let left = PUBLISH_TIMEOUT.saturating_sub(started.elapsed()).min(ATTEMPT_TIMEOUT);
        let error = match tokio::time::timeout(left, attempt).await {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "no acknowledgement".to_string(),
        };
        if started.elapsed() >= PUBLISH_TIMEOUT {
            return Err(StoreError::Replication(format!(
                "the cluster did not store the event within {} s: {error}",
                PUBLISH_TIMEOUT.as_secs()
            )));
        }
        tracing::debug!(error, "publishing an event again");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// What the follower calls with each record it mirrored: the tenant, where it is in the
/// local log, and the (wrapped) record.
pub type OnRecord = Arc<dyn Fn(&str, Position, &[u8]) + Send + Sync>;

/// Mirrors everything the event stream holds now that this node has not, before the
/// node loads its learned state (which then replays it from the log). Returns how many
/// records it mirrored.
pub async fn catch_up_events(store: &super::ReplicatedStore) -> Result<u64, ClusterError> {
    let shared = &store.0;
    let mut mirror = Mirror::open(shared.inner.clone(), shared.cluster.clone())?;
    let (first, last) = shared.cluster.sequences(EVENTS_STREAM).await?;
    // Events older than the stream keeps are gone for every node (retention).
    mirror.consumed = mirror.consumed.max(first.saturating_sub(1));
    let started = mirror.consumed;
    if mirror.consumed < last {
        let mut messages = subscribe(&shared.cluster, mirror.consumed + 1).await?;
        while mirror.consumed < last {
            let message = super::next_within(&mut messages, mirror.consumed).await?;
            mirror.take(&message, None)?;
        }
    }
    mirror.save().await?;
    Ok(mirror.consumed - started)
}

/// Mirrors the stream from where [`catch_up_events`] left it for as long as the process
/// runs, calling `on_record` with each record mirrored.
pub fn follow_events(store: &super::ReplicatedStore, on_record: OnRecord) {
    let (inner, cluster) = (store.0.inner.clone(), store.0.cluster.clone());
    cluster.runtime.clone().spawn(async move {
        loop {
            let result: Result<(), ClusterError> = async {
                let mut mirror = Mirror::open(inner.clone(), cluster.clone())?;
                let mut messages = subscribe(&cluster, mirror.consumed + 1).await?;
                let mut saved = Instant::now();
                loop {
                    match tokio::time::timeout(SAVE_EVERY, messages.next()).await {
                        Ok(Some(Ok(message))) => mirror.take(&message, Some(&on_record))?,
                        Ok(Some(Err(e))) => return Err(ClusterError::Follow(e.to_string())),
                        Ok(None) => return Err(ClusterError::Follow("the subscription ended".into())),
                        Err(_) => {}
                    }
                    if saved.elapsed() >= SAVE_EVERY {
                        mirror.save().await?;
                        saved = Instant::now();
                    }
                }
            }
            .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "following the event stream; resubscribing");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

async fn subscribe(cluster: &Cluster, from: u64) -> Result<super::Ordered, ClusterError> {
    cluster.read_from(EVENTS_STREAM, EVENTS_PREFIX, from).await
}

/// The mirror's state: the last sequence taken, and the cluster's.
struct Mirror {
    inner: Arc<dyn Storage>,
    cluster: Arc<Cluster>,
    consumed: u64,
}

impl Mirror {
    /// Where the mirror was, moved past any record it mirrored after its last save (read
    /// back from the log, and indexed again).
    fn open(inner: Arc<dyn Storage>, cluster: Arc<Cluster>) -> Result<Mirror, StoreError> {
        let saved = inner.get(MIRROR_KEY)?;
        let (mut consumed, end) =
            saved.as_deref().and_then(decode_state).unwrap_or((0, Position { segment: 0, offset: 0 }));
        let mut index = Batch::new();
        inner.events().replay(end.segment..u32::MAX, &mut |at, payload| {
            if at < end {
                return;
            }
            if let (Some(origin), _) = interaction::unmirror(payload) {
                consumed = consumed.max(origin.seq);
                index.put(keys::mirrored(origin.node, origin.at.segment, origin.at.offset), position(at).to_vec());
            }
        })?;
        if !index.is_empty() {
            inner.write_unacknowledged(index)?;
        }
        cluster.events_consumed.send_modify(|c| *c = (*c).max(consumed));
        Ok(Mirror { inner, cluster, consumed })
    }

    /// Takes one message: another node's record is appended here, indexed, and handed to
    /// `on_record`; this node's own is already in its log.
    fn take(
        &mut self,
        message: &async_nats::jetstream::Message,
        on_record: Option<&OnRecord>,
    ) -> Result<(), StoreError> {
        let seq = message.info().map(|i| i.stream_sequence).unwrap_or(0);
        let origin =
            message.headers.as_ref().and_then(|h| h.get("Nats-Msg-Id")).and_then(|id| parse_message_id(id.as_str()));
        match origin {
            // This node's own record, in its log already — unless a crash lost it from
            // there before it was written (it was answered once the stream had it): at the
            // catch-up after a restart, such a record is taken back like another node's.
            Some((node, at))
                if node == self.cluster.tag && (on_record.is_some() || self.has(at, &message.payload)?) => {}
            Some((node, at)) => {
                let origin = Origin { node, at, seq };
                match interaction::mirrored_record(origin, &message.payload) {
                    Some(record) => self.append(origin, &record, on_record)?,
                    None => tracing::error!(seq, "an unreadable event was skipped"),
                }
            }
            None => tracing::error!(seq, "an event without its id was skipped"),
        }
        self.consumed = seq;
        self.cluster.events_consumed.send_modify(|c| *c = (*c).max(seq));
        Ok(())
    }

    /// Whether this node's log holds `payload` at `at`.
    fn has(&self, at: Position, payload: &[u8]) -> Result<bool, StoreError> {
        Ok(self.inner.events().read(at)?.is_some_and(|here| here == payload))
    }

    fn append(&self, origin: Origin, record: &[u8], on_record: Option<&OnRecord>) -> Result<(), StoreError> {
        let (here, _) = self.inner.events().append(record, false)?;
        let mut index = Batch::new();
        index.put(keys::mirrored(origin.node, origin.at.segment, origin.at.offset), position(here).to_vec());
        self.inner.write_unacknowledged(index)?;
        if let (Some(on_record), Some(tenant)) = (on_record, interaction::record_tenant(record)) {
            on_record(tenant, here, record);
        }
        Ok(())
    }

    /// Saves where the mirror is, once the log has synced everything mirrored so far.
    async fn save(&self) -> Result<(), StoreError> {
        let (consumed, end) = (self.consumed, self.inner.events().end());
        self.inner.events().barrier().await?;
        let mut state = Batch::new();
        state.put(MIRROR_KEY.to_vec(), encode_state(consumed, end));
        self.inner.write_unacknowledged(state)
    }
}

fn encode_state(consumed: u64, end: Position) -> Vec<u8> {
    [consumed.to_le_bytes().as_slice(), &position(end)].concat()
}

fn decode_state(bytes: &[u8]) -> Option<(u64, Position)> {
    let consumed = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?);
    Some((consumed, interaction::decode_position(bytes.get(8..)?)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_and_the_saved_state_read_back() {
        let at = Position { segment: 7, offset: 4096 };
        assert_eq!(parse_message_id(&message_id(0xdead_beef, at)), Some((0xdead_beef, at)));
        assert_eq!(parse_message_id("nope"), None);
        assert_eq!(decode_state(&encode_state(42, at)), Some((42, at)));
        assert_eq!(decode_state(b"short"), None);
    }
}
