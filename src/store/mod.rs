//! Persistence: the project's own storage interface ([`Storage`]) with sled behind it
//! ([`SledStore`]).
//!
//! Everything needed to restart without loss goes through [`Storage::write`]: a [`Batch`] of puts
//! and deletes is applied atomically (readers see all of it or none of it at once, and so does
//! recovery after a crash) and the call returns a [`Durable`] that completes once the batch is
//! on disk. Acknowledge a client only after its `Durable` completes. Durability is batched
//! ("group commit"): one background thread per store issues one sled flush for every write that
//! arrived while the previous flush ran, instead of one flush per write. Batches of several
//! operations are made crash-atomic by a one-entry journal rather than sled's `apply_batch`,
//! which is several times slower under flushing (see `journal.rs`).
//!
//! # Key layout
//!
//! Keys are UTF-8 text with `/` separators, tenant first, so one tenant's data is one prefix
//! (`t/{tenant}/`) and each entity kind is a sub-prefix. Components are escaped (`%` → `%25`,
//! `/` → `%2F`) so an id containing `/` cannot forge another key; build keys only with
//! [`keys::key`] and [`keys::prefix`].
//!
//! | Key                                   | Value                                         |
//! |---------------------------------------|-----------------------------------------------|
//! | `t/{tenant}/meta`                     | tenant record                                 |
//! | `t/{tenant}/key/{key_hash}`           | API key record                                |
//! | `t/{tenant}/schema/{id}`              | schema JSON                                   |
//! | `t/{tenant}/offer/{id}`               | offer JSON                                    |
//! | `t/{tenant}/rule/{id}`                | qualification rule JSON                       |
//! | `t/{tenant}/channel/{id}`             | channel JSON                                  |
//! | `t/{tenant}/flow/{id}`                | flow JSON, including its published versions   |
//! | `t/{tenant}/row/{schema_id}/{row_key}`| customer row JSON                             |
//! | `t/{tenant}/plugin/{name}`            | rule-file source                              |
//! | `t/{tenant}/interaction/{id}`         | decision record of earlier versions (now: [`eventlog`]) |
//! | `t/{tenant}/response/{id}`            | response record                               |
//! | `t/{tenant}/idem/{idempotency_key}`   | first `respond` result for that key           |
//! | `t/{tenant}/counter/{...}`            | learning counters                             |

pub mod eventlog;
pub mod fault;
mod journal;
pub mod keys;
mod sled_store;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

pub use sled_store::SledStore;

/// At most this long between an unacknowledged write and its flush.
pub const UNACKNOWLEDGED_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

/// The storage interface the rest of arbiter sees: [`SledStore`] on one node, wrapped by
/// `cluster::ReplicatedStore` (shared writes go through JetStream first) in a cluster.
pub trait Storage: Send + Sync + 'static {
    /// Applies `batch` atomically — every put and delete, or none — so readers see it at once,
    /// and returns a handle that completes when the batch is durable on disk. If the handle
    /// resolves to an error, the write stays visible but may or may not survive a crash.
    fn write(&self, batch: Batch) -> Result<Durable, StoreError>;

    /// Applies `batch` without an acknowledgement: readers see it at once, and it reaches
    /// disk with the next group flush, or within [`UNACKNOWLEDGED_FLUSH`] when nothing else
    /// flushes. For writes nobody waits on (withdrawing a response whose write failed): they
    /// must not make the committer flush. A crash can lose the last moments of them.
    fn write_unacknowledged(&self, batch: Batch) -> Result<(), StoreError>;

    /// The value stored under `key`, if any (including writes not yet durable).
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;

    /// Every `(key, value)` whose key starts with `prefix`, in key order. Used at startup to
    /// rebuild state, so it returns everything at once.
    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError>;

    /// Up to `limit` records under `prefix` with keys after `after` (from the start when
    /// `None`), in key order. For long reads alongside traffic (reports, training): each
    /// page is one short read, so writers are never held up for a whole scan.
    fn scan_page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        let all = self.scan_prefix(prefix)?;
        let rest = all.into_iter().filter(|(k, _)| after.is_none_or(|a| k.as_slice() > a));
        Ok(rest.take(limit).collect())
    }

    /// Makes every write applied so far durable, blocking until it is. For graceful shutdown.
    fn flush(&self) -> Result<(), StoreError>;

    /// The append-only event log kept beside the records (decisions).
    fn events(&self) -> &dyn eventlog::EventStore;

    /// Why writes are failing now (the last flush failed, the disk is full), if they are:
    /// `/healthz` reports the store degraded while decisions and reads go on.
    fn degraded(&self) -> Option<String> {
        None
    }
}

/// A stored `(key, value)` pair.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Errors from the storage layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// sled failed (I/O, corruption, unsupported configuration).
    #[error("storage engine error: {0}")]
    Sled(#[from] sled::Error),
    /// The background committer is gone, so durability can no longer be confirmed.
    #[error("the storage committer has stopped; the write may not be durable")]
    CommitterStopped,
    /// The journal entry of an interrupted batch could not be decoded.
    #[error("the storage journal is corrupt: {0}")]
    CorruptJournal(&'static str),
    /// An earlier batch failed part-way; reopening the store completes it from the journal.
    #[error("an earlier write failed part-way; reopen the store to recover")]
    Halted,
    /// The background committer thread could not be started.
    #[error("could not start the storage committer thread: {0}")]
    CommitterSpawn(Arc<std::io::Error>),
    /// In a cluster: another node changed the same tenant first (compare-and-set on the
    /// configuration stream failed); nothing was written.
    #[error("{0}")]
    Conflict(String),
    /// In a cluster: JetStream did not store the change on a quorum; nothing was written here.
    #[error("{0}")]
    Replication(String),
    /// A read, write or flush failed at the disk (a full disk is `ErrorKind::StorageFull`).
    #[error("storage I/O error: {0}")]
    Io(Arc<std::io::Error>),
}

impl StoreError {
    /// Whether the disk is full: the write was not made, and may succeed once space is freed.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Io(e) => e.kind() == std::io::ErrorKind::StorageFull,
            StoreError::Sled(sled::Error::Io(e)) => e.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// One write operation of a [`Batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// Store `value` under `key`.
    Put { key: Vec<u8>, value: Vec<u8> },
    /// Remove `key` (a no-op if it is absent).
    Delete { key: Vec<u8> },
}

impl Op {
    pub fn key(&self) -> &[u8] {
        match self {
            Op::Put { key, .. } | Op::Delete { key } => key,
        }
    }
}

/// One atomic unit of writes, built with [`Batch::put`] and [`Batch::delete`]. Operations apply
/// in order, so a later operation on the same key wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    ops: Vec<Op>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Batch {
        Batch::default()
    }

    /// Adds "store `value` under `key`".
    pub fn put(&mut self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) -> &mut Batch {
        self.ops.push(Op::Put { key: key.into(), value: value.into() });
        self
    }

    /// Adds "remove `key`" (a no-op if it is absent).
    pub fn delete(&mut self, key: impl Into<Vec<u8>>) -> &mut Batch {
        self.ops.push(Op::Delete { key: key.into() });
        self
    }

    /// Number of operations.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// Whether the batch has no operations.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// The operations, in order.
    pub fn into_ops(self) -> Vec<Op> {
        self.ops
    }

    /// The operations, in order, borrowed.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}

impl From<Vec<Op>> for Batch {
    fn from(ops: Vec<Op>) -> Batch {
        Batch { ops }
    }
}

/// Completes when a write is durable. Await it from async code, or call [`Durable::wait`] from
/// sync code. Never hangs: if the committer is gone it resolves to
/// [`StoreError::CommitterStopped`].
/// Fault injection for durability tests: `ARBITER_TEST_FLUSH_DELAY_MS` holds every group
/// flush (sled's and the event log's) back, widening the window in which a write is
/// accepted but not yet on disk. A server that acknowledged before its flush would lose
/// writes to `kill -9` in that window; `tests/crash_kill9.rs` sets it to prove the
/// acknowledgement waits. Unset in production.
pub(crate) fn injected_flush_delay() -> Option<std::time::Duration> {
    let ms: u64 = std::env::var("ARBITER_TEST_FLUSH_DELAY_MS").ok()?.parse().ok()?;
    Some(std::time::Duration::from_millis(ms.min(1000)))
}

#[must_use = "a write is only acknowledged once its Durable completes"]
#[derive(Debug)]
pub struct Durable {
    /// The committer sends the flush result here; a dropped sender means it stopped.
    rx: oneshot::Receiver<Result<(), StoreError>>,
}

impl Durable {
    /// A pair: the sender the committer completes, and the handle the writer waits on.
    pub(crate) fn channel() -> (oneshot::Sender<Result<(), StoreError>>, Durable) {
        let (tx, rx) = oneshot::channel();
        (tx, Durable { rx })
    }

    /// A handle that is already complete with `result` (a write refused before it was made).
    pub fn ready(result: Result<(), StoreError>) -> Durable {
        let (tx, durable) = Durable::channel();
        let _ = tx.send(result);
        durable
    }

    /// Blocks the current thread until the write is durable. Usable anywhere, also on a
    /// thread that runs async tasks (start-up code does), where it parks the thread:
    /// request handlers `.await` the `Durable` instead.
    pub fn wait(self) -> Result<(), StoreError> {
        struct Unpark(std::thread::Thread);
        impl std::task::Wake for Unpark {
            fn wake(self: Arc<Self>) {
                self.0.unpark();
            }
        }
        let waker = std::task::Waker::from(Arc::new(Unpark(std::thread::current())));
        let mut cx = Context::from_waker(&waker);
        let mut durable = self;
        loop {
            if let Poll::Ready(result) = Pin::new(&mut durable).poll(&mut cx) {
                return result;
            }
            std::thread::park();
        }
    }
}

impl Future for Durable {
    type Output = Result<(), StoreError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.rx).poll(cx).map(|received| received.unwrap_or(Err(StoreError::CommitterStopped)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_keeps_operations_in_order() {
        let mut batch = Batch::new();
        batch.put("a", "1").delete("b").put(b"c".to_vec(), vec![3]);
        assert_eq!(batch.len(), 3);
        assert_eq!(
            batch.into_ops(),
            vec![
                Op::Put { key: b"a".to_vec(), value: b"1".to_vec() },
                Op::Delete { key: b"b".to_vec() },
                Op::Put { key: b"c".to_vec(), value: vec![3] },
            ]
        );
    }

    #[test]
    fn durable_with_dropped_sender_is_committer_stopped() {
        let (tx, durable) = Durable::channel();
        drop(tx);
        assert!(matches!(durable.wait(), Err(StoreError::CommitterStopped)));
    }

    #[tokio::test]
    async fn durable_can_be_awaited() {
        let (tx, durable) = Durable::channel();
        tx.send(Ok(())).unwrap();
        assert!(durable.await.is_ok());
    }

    #[test]
    fn storage_is_object_safe_and_durable_is_send() {
        fn assert_send<T: Send + Unpin>() {}
        assert_send::<Durable>();
        let _: Option<Box<dyn Storage>> = None;
    }
}
