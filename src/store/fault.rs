//! Fault injection for tests: a [`Storage`] that fails writes or flushes on demand, so
//! tests can check that a failed write is neither acknowledged nor visible.

use std::ops::Range;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::eventlog::{EventStore, Position};
use super::{Batch, Durable, KeyValue, Storage, StoreError};

/// Wraps a store; while a switch is on, writes fail before they are made
/// (`fail_writes`) or are made but never become durable (`fail_flushes`), both with a
/// full-disk error.
pub struct FaultyStore {
    inner: Arc<dyn Storage>,
    pub fail_writes: AtomicBool,
    pub fail_flushes: AtomicBool,
    /// The last write failed (until one goes through), as a real store's health says.
    failing: AtomicBool,
}

impl FaultyStore {
    pub fn new(inner: Arc<dyn Storage>) -> FaultyStore {
        FaultyStore {
            inner,
            fail_writes: AtomicBool::new(false),
            fail_flushes: AtomicBool::new(false),
            failing: AtomicBool::new(false),
        }
    }

    fn disk_full() -> StoreError {
        StoreError::Io(Arc::new(std::io::Error::from(std::io::ErrorKind::StorageFull)))
    }
}

impl Storage for FaultyStore {
    fn write(&self, batch: Batch) -> Result<Durable, StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            self.failing.store(true, Ordering::SeqCst);
            return Err(FaultyStore::disk_full());
        }
        let durable = self.inner.write(batch)?;
        if self.fail_flushes.load(Ordering::SeqCst) {
            drop(durable);
            self.failing.store(true, Ordering::SeqCst);
            return Ok(Durable::ready(Err(FaultyStore::disk_full())));
        }
        self.failing.store(false, Ordering::SeqCst);
        Ok(durable)
    }

    fn degraded(&self) -> Option<String> {
        self.failing.load(Ordering::SeqCst).then(|| FaultyStore::disk_full().to_string())
    }

    fn write_unacknowledged(&self, batch: Batch) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(FaultyStore::disk_full());
        }
        self.inner.write_unacknowledged(batch)
    }

    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.get(key)
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan_prefix(prefix)
    }

    fn scan_page(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Result<Vec<KeyValue>, StoreError> {
        self.inner.scan_page(prefix, after, limit)
    }

    fn flush(&self) -> Result<(), StoreError> {
        if self.fail_flushes.load(Ordering::SeqCst) {
            return Err(FaultyStore::disk_full());
        }
        self.inner.flush()
    }

    fn events(&self) -> &dyn EventStore {
        self
    }
}

/// The event log fails with the same switches.
impl EventStore for FaultyStore {
    fn append(&self, payload: &[u8], acknowledged: bool) -> Result<(Position, Option<Durable>), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) {
            return Err(FaultyStore::disk_full());
        }
        let (at, durable) = self.inner.events().append(payload, acknowledged)?;
        if durable.is_some() && self.fail_flushes.load(Ordering::SeqCst) {
            return Ok((at, Some(Durable::ready(Err(FaultyStore::disk_full())))));
        }
        Ok((at, durable))
    }

    fn barrier(&self) -> Durable {
        if self.fail_flushes.load(Ordering::SeqCst) {
            return Durable::ready(Err(FaultyStore::disk_full()));
        }
        self.inner.events().barrier()
    }

    fn read(&self, at: Position) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.events().read(at)
    }

    fn replay(&self, segments: Range<u32>, each: &mut dyn FnMut(Position, &[u8])) -> Result<(), StoreError> {
        self.inner.events().replay(segments, each)
    }

    fn end(&self) -> Position {
        self.inner.events().end()
    }

    fn segments(&self) -> Result<Vec<u32>, StoreError> {
        self.inner.events().segments()
    }

    fn drop_before(&self, cutoff: std::time::SystemTime) -> Result<usize, StoreError> {
        self.inner.events().drop_before(cutoff)
    }

    fn save_checkpoint(&self, bytes: &[u8]) -> Result<(), StoreError> {
        if self.fail_writes.load(Ordering::SeqCst) || self.fail_flushes.load(Ordering::SeqCst) {
            return Err(FaultyStore::disk_full());
        }
        self.inner.events().save_checkpoint(bytes)
    }

    fn load_checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        self.inner.events().load_checkpoint()
    }

    fn syncs(&self) -> u64 {
        self.inner.events().syncs()
    }
}
