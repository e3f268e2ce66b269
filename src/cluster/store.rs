//! The replicating store: the embedded store, with every write of shared records first
//! stored by JetStream on a quorum, under compare-and-set on its subject.

use std::collections::HashMap;
use std::sync::Arc;

use async_nats::jetstream::context::PublishErrorKind;
use async_nats::HeaderMap;
use parking_lot::Mutex;

use super::{subject_of, Cluster, MAX_MESSAGE_BYTES, PUBLISH_TIMEOUT};
use crate::store::{eventlog, Batch, Durable, KeyValue, Op, Storage, StoreError};

/// Records of this node alone, never replicated: what it has applied of the streams.
pub(super) const LOCAL_PREFIX: &[u8] = crate::store::keys::NODE_LOCAL_PREFIX;
/// The last stream sequence the follower has applied (`u64`, little-endian).
pub(super) const CONSUMED_KEY: &[u8] = b"cluster/consumed";

/// The key under which this node keeps the last sequence it applied of `subject`.
pub(super) fn applied_key(subject: &str) -> Vec<u8> {
    [LOCAL_PREFIX, b"applied/", subject.as_bytes()].concat()
}

/// A [`Storage`] whose writes go through the cluster's configuration stream.
#[derive(Clone)]
pub struct ReplicatedStore(pub(super) Arc<Shared>);

pub(super) struct Shared {
    pub(super) inner: Arc<dyn Storage>,
    pub(super) cluster: Arc<Cluster>,
    /// Per subject, the last sequence applied here (by this node's writes or the
    /// follower): the compare-and-set expects it. Loaded from the store at start.
    pub(super) applied: Mutex<HashMap<String, u64>>,
    /// One write at a time per node: the sequence a write expects must not be taken by
    /// this node's own concurrent write (another node's still conflicts).
    pub(super) publishing: tokio::sync::Mutex<()>,
    /// The event log, with this node's records also published to the event stream.
    events: super::events::ReplicatedEvents,
}

impl ReplicatedStore {
    /// The cluster this store replicates through.
    pub fn cluster(&self) -> &Arc<Cluster> {
        &self.0.cluster
    }

    pub fn new(inner: Arc<dyn Storage>, cluster: Arc<Cluster>) -> Result<ReplicatedStore, StoreError> {
        let mut applied = HashMap::new();
        let prefix = applied_key("");
        for (key, value) in inner.scan_prefix(&prefix)? {
            let subject = String::from_utf8_lossy(&key[prefix.len()..]).into_owned();
            applied.insert(subject, decode_u64(&value));
        }
        let events = super::events::ReplicatedEvents { inner: inner.clone(), cluster: cluster.clone() };
        Ok(ReplicatedStore(Arc::new(Shared {
            inner,
            cluster,
            applied: Mutex::new(applied),
            publishing: tokio::sync::Mutex::new(()),
            events,
        })))
    }
}

impl Shared {
    /// Publishes `batch` (split if large) with compare-and-set on `expected`, then writes
    /// it here.
    async fn replicate(self: Arc<Self>, subject: String, mut expected: u64, batch: Batch) -> Result<(), StoreError> {
        let _one = self.publishing.lock().await;
        let mut last = 0;
        for chunk in chunks(batch.into_ops()) {
            let mut headers = HeaderMap::new();
            headers.insert("Nats-Expected-Last-Subject-Sequence", expected.to_string().as_str());
            let payload = encode(&chunk);
            let ack = async {
                let sent = self.cluster.js.publish_with_headers(subject.clone(), headers, payload.into()).await?;
                sent.await
            };
            let seq = match tokio::time::timeout(PUBLISH_TIMEOUT, ack).await {
                Ok(Ok(ack)) => ack.sequence,
                // Newer servers also refuse a change whose expected sequence another
                // in-flight change already claimed (error code 10164), as an `Other`.
                Ok(Err(e))
                    if e.kind() == PublishErrorKind::WrongLastSequence
                        || e.to_string().contains("wrong last sequence") =>
                {
                    return Err(StoreError::Conflict(
                        "another node changed this tenant's configuration at the same time: read it again and retry"
                            .into(),
                    ))
                }
                Ok(Err(e)) => {
                    return Err(StoreError::Replication(format!("the cluster did not store the change: {e}")))
                }
                Err(_) => {
                    return Err(StoreError::Replication(format!(
                        "the cluster did not acknowledge the change within {} s",
                        PUBLISH_TIMEOUT.as_secs()
                    )))
                }
            };
            let durable = write_applied(self.inner.as_ref(), &subject, seq, chunk)?;
            self.applied.lock().insert(subject.clone(), seq);
            durable.await?;
            (last, expected) = (seq, seq);
        }
        tracing::debug!(subject, seq = last, "configuration change replicated");
        Ok(())
    }
}

/// Writes one applied message's records here with the sequence it was applied at.
pub(super) fn write_applied(inner: &dyn Storage, subject: &str, seq: u64, ops: Vec<Op>) -> Result<Durable, StoreError> {
    let mut b = Batch::from(ops);
    b.put(applied_key(subject), seq.to_le_bytes().to_vec());
    inner.write(b)
}

/// The subject a batch is settled on: the registry's when it touches a record outside
/// any tenant (creating a tenant writes the tenant list and the tenant's record), else
/// its one tenant's. `None` for node-local bookkeeping only; an error for a batch that
/// spans tenants.
fn subject_of_batch(ops: &[Op]) -> Result<Option<String>, StoreError> {
    let mut subject = None;
    for op in ops {
        match subject_of(op.key()) {
            Some(s) if s == super::REGISTRY_SUBJECT => return Ok(Some(s)),
            Some(s) if subject.as_ref().is_some_and(|first| *first != s) => {
                return Err(StoreError::Replication("one change may not span tenants".into()))
            }
            Some(s) => subject = Some(s),
            None => {}
        }
    }
    Ok(subject)
}

impl Storage for ReplicatedStore {
    fn write(&self, batch: Batch) -> Result<Durable, StoreError> {
        let Some(subject) = subject_of_batch(batch.ops())? else {
            // Node-local bookkeeping (or nothing): written here only.
            return self.0.inner.write(batch);
        };
        // The sequence expected is taken now, on the caller's thread: a tenant actor makes
        // another node's change live (and marks it applied) between its own commands, so
        // this is the change its command was staged on, never a later one it has not seen.
        let expected = self.0.applied.lock().get(&subject).copied().unwrap_or(0);
        let (tx, durable) = Durable::channel();
        let this = self.0.clone();
        self.0.cluster.runtime.spawn(async move {
            let _ = tx.send(this.replicate(subject, expected, batch).await);
        });
        Ok(durable)
    }

    fn write_unacknowledged(&self, batch: Batch) -> Result<(), StoreError> {
        // Nothing shared is written unacknowledged (it withdraws log-side responses).
        self.0.inner.write_unacknowledged(batch)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.0.inner.get(key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.0.inner.scan_prefix(prefix)
    }

    fn scan_page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        self.0.inner.scan_page(prefix, after, limit)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.0.inner.flush()
    }

    fn events(&self) -> &dyn eventlog::EventStore {
        &self.0.events
    }

    fn degraded(&self) -> Option<String> {
        self.0.inner.degraded()
    }
}

/// Splits operations into runs of at most [`MAX_MESSAGE_BYTES`] encoded (one operation
/// larger than that still goes alone, and NATS refuses it).
fn chunks(ops: Vec<Op>) -> Vec<Vec<Op>> {
    let mut out = vec![Vec::new()];
    let mut size = 0;
    for op in ops {
        let len = match &op {
            Op::Put { key, value } => key.len() + value.len() + 16,
            Op::Delete { key } => key.len() + 16,
        };
        let current = out.last_mut().expect("never empty");
        if size + len > MAX_MESSAGE_BYTES && !current.is_empty() {
            out.push(Vec::new());
            size = 0;
        }
        out.last_mut().expect("never empty").push(op);
        size += len;
    }
    out
}

/// A message's payload: its operations, postcard-encoded.
#[derive(serde::Serialize, serde::Deserialize)]
enum WireOp {
    Put(Vec<u8>, Vec<u8>),
    Delete(Vec<u8>),
}

fn encode(ops: &[Op]) -> Vec<u8> {
    let wire: Vec<WireOp> = ops
        .iter()
        .map(|op| match op {
            Op::Put { key, value } => WireOp::Put(key.clone(), value.clone()),
            Op::Delete { key } => WireOp::Delete(key.clone()),
        })
        .collect();
    postcard::to_allocvec(&wire).expect("operations encode")
}

pub(super) fn decode(payload: &[u8]) -> Option<Vec<Op>> {
    let wire: Vec<WireOp> = postcard::from_bytes(payload).ok()?;
    Some(
        wire.into_iter()
            .map(|w| match w {
                WireOp::Put(key, value) => Op::Put { key, value },
                WireOp::Delete(key) => Op::Delete { key },
            })
            .collect(),
    )
}

pub(super) fn decode_u64(bytes: &[u8]) -> u64 {
    bytes.try_into().map(u64::from_le_bytes).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_survive_the_wire_and_large_batches_split() {
        let ops = vec![
            Op::Put { key: b"t/a/offer/1".to_vec(), value: b"{}".to_vec() },
            Op::Delete { key: b"t/a/offer/2".to_vec() },
        ];
        assert_eq!(decode(&encode(&ops)), Some(ops.clone()));
        let big: Vec<Op> =
            (0..3).map(|i| Op::Put { key: format!("t/a/row/s/{i}").into_bytes(), value: vec![0; 300_000] }).collect();
        let split = chunks(big);
        assert_eq!(split.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
        assert_eq!(chunks(ops).len(), 1);
        assert_eq!(decode(b"\xff\xff"), None);
    }
}
