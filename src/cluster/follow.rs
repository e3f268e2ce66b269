//! Applying the configuration stream: every batch another node stored, in stream order,
//! written to this node's store and then handed to the caller to make live.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use super::store::{decode, decode_u64, write_applied, ReplicatedStore, Shared, CONSUMED_KEY};
use super::{ClusterError, CONFIG_STREAM, SUBJECT_PREFIX};
use crate::store::{Batch, Op};

/// One batch from the stream, written here, for the caller to make live and then
/// [`mark`](Applied::mark): until it is marked, this node's own changes on the subject are
/// refused by compare-and-set, because they were prepared without it.
pub struct Applied {
    pub seq: u64,
    /// The records written, in order.
    pub ops: Vec<Op>,
    subject: String,
    shared: Arc<Shared>,
}

impl Applied {
    /// Records that the change is live here.
    pub fn mark(&self) {
        let mut applied = self.shared.applied.lock();
        let seq = applied.entry(self.subject.clone()).or_default();
        *seq = (*seq).max(self.seq);
    }
}

/// What the follower calls after each applied batch is durable here.
pub type OnApplied = Arc<dyn Fn(Applied) + Send + Sync>;

/// Applies everything the stream holds now that this node has not applied, before the
/// node loads its tenants: a joining or restarted node starts from the cluster's state.
pub async fn catch_up(store: &ReplicatedStore) -> Result<u64, ClusterError> {
    let shared = &store.0.clone();
    let last = shared.cluster.last_sequence(CONFIG_STREAM).await?;
    let mut consumed = consumed(shared)?;
    if consumed >= last {
        return Ok(0);
    }
    let started = consumed;
    let mut messages = subscribe(shared, consumed + 1).await?;
    while consumed < last {
        let message = super::next_within(&mut messages, consumed).await?;
        if let Some(applied) = apply(shared, &message).await? {
            // Nothing runs yet: what is stored is what the node loads next.
            applied.mark();
        }
        consumed = seq_of(&message);
    }
    Ok(consumed - started)
}

/// Follows the stream from where [`catch_up`] left it for as long as the process runs,
/// calling `on_applied` after each batch from another node is durable here. A broken
/// subscription is re-made from the last applied sequence.
pub fn follow(store: &ReplicatedStore, on_applied: OnApplied) {
    let shared = store.0.clone();
    shared.cluster.runtime.clone().spawn(async move {
        loop {
            if let Err(e) = follow_once(&shared, &on_applied).await {
                tracing::warn!(error = %e, "following the configuration stream; resubscribing");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

async fn follow_once(shared: &Arc<Shared>, on_applied: &OnApplied) -> Result<(), ClusterError> {
    let mut messages = subscribe(shared, consumed(shared)? + 1).await?;
    while let Some(message) = messages.next().await {
        let message = message.map_err(|e| ClusterError::Follow(e.to_string()))?;
        if let Some(applied) = apply(shared, &message).await? {
            on_applied(applied);
        }
    }
    Err(ClusterError::Follow("the subscription ended".into()))
}

async fn subscribe(shared: &Shared, from: u64) -> Result<super::Ordered, ClusterError> {
    shared.cluster.read_from(CONFIG_STREAM, SUBJECT_PREFIX, from).await
}

fn seq_of(message: &async_nats::jetstream::Message) -> u64 {
    message.info().map(|i| i.stream_sequence).unwrap_or(0)
}

fn consumed(shared: &Shared) -> Result<u64, ClusterError> {
    Ok(shared.inner.get(CONSUMED_KEY)?.map_or(0, |v| decode_u64(&v)))
}

/// Writes one message's batch here unless this node already has it (its own write, or
/// applied before a restart). Returns what was applied.
async fn apply(
    shared: &Arc<Shared>,
    message: &async_nats::jetstream::Message,
) -> Result<Option<Applied>, ClusterError> {
    let seq = seq_of(message);
    let subject = message.subject.to_string();
    // Not while this node publishes: its own change must be recognised as applied.
    let _one = shared.publishing.lock().await;
    let known = shared.applied.lock().get(&subject).copied().unwrap_or(0);
    let consumed = Op::Put { key: CONSUMED_KEY.to_vec(), value: seq.to_le_bytes().to_vec() };
    let decoded = if seq <= known { None } else { decode(&message.payload) };
    let Some(ops) = decoded else {
        if seq > known {
            tracing::error!(seq, subject, "an unreadable configuration message was skipped");
        }
        shared.inner.write_unacknowledged(Batch::from(vec![consumed]))?;
        return Ok(None);
    };
    // The records are also handed to the tenant actor, hence the copy.
    let stored: Vec<Op> = ops.iter().cloned().chain([consumed]).collect();
    write_applied(shared.inner.as_ref(), &subject, seq, stored)?.await?;
    Ok(Some(Applied { seq, ops, subject, shared: shared.clone() }))
}
