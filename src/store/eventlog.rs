//! The event log: decisions and responses as append-only records in local segment files,
//! beside sled, which keeps entities and rows.
//!
//! * **Framing.** A record is `length (u32 LE) · CRC-32 of the payload (u32 LE) · payload`.
//!   A segment is `{number:010}.log` in the log's folder, at most [`SEGMENT_BYTES`] long.
//! * **Positions.** Appending returns the record's [`Position`] (segment, offset): positions
//!   grow with time, so an id made from one is time-ordered and locates its record with one
//!   read — no index in memory.
//! * **Group commit.** Appends copy the record into an in-memory tail under a short lock; one
//!   writer thread writes the tail out. An append that asks for an acknowledgement gets a
//!   [`Durable`] that completes after the write and an `fdatasync` covering it (and every
//!   append before it); other appends are written within [`UNACKNOWLEDGED_FLUSH`] without a
//!   sync. A crash loses the unacknowledged appends not yet written (at most that long);
//!   once written, a process crash loses none of them, and a power loss what was not synced.
//! * **Recovery.** On open, a torn tail of the last segment (a record cut short or failing its
//!   CRC) is truncated at the last whole record; appends then start a new segment.
//! * **Retention** drops whole segments whose last write is older than the retention period.
//! * **Failure.** A failed write fails its waiters, cuts what it wrote off its segments again
//!   (so a record that was not acknowledged is not found after a restart either) and moves
//!   appends to a new segment, so the positions handed out later stay true.
//! * **Checkpoints.** The log keeps one opaque checkpoint blob beside its segments (state
//!   derived from the closed segments, written by `tenant::checkpoint`): replaced atomically,
//!   so a crash leaves the old one or the new one.
//!
//! [`EventStore`] is the interface the tenant runtime sees; a replicated log can stand behind
//! it instead of these files.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, Read, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::{Durable, StoreError, UNACKNOWLEDGED_FLUSH};

/// A segment is closed once it reaches this size.
pub const SEGMENT_BYTES: u64 = 16 << 20;
/// The longest record accepted (a decision is a few hundred bytes).
pub const MAX_RECORD: usize = 1 << 20;
const HEADER: usize = 8;

/// Where a record is: its segment and its byte offset there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize)]
pub struct Position {
    pub segment: u32,
    pub offset: u32,
}

/// The log interface: append, read one record back, replay in order, drop old records,
/// and keep a checkpoint of what was derived from the closed segments.
pub trait EventStore: Send + Sync + 'static {
    /// Appends `payload`. With `acknowledged`, the returned `Durable` completes once the
    /// record is synced to disk; without, it is written within `UNACKNOWLEDGED_FLUSH`.
    fn append(&self, payload: &[u8], acknowledged: bool) -> Result<(Position, Option<Durable>), StoreError>;
    /// Completes once everything appended before the call is written and synced (or its
    /// write failed: a record then reads back as `None`).
    fn barrier(&self) -> Durable;
    /// The record at `at`, if there is a whole one there.
    fn read(&self, at: Position) -> Result<Option<Vec<u8>>, StoreError>;
    /// Calls `each` with every record appended so far to the segments in `segments`,
    /// oldest first (`0..u32::MAX`: the whole log).
    fn replay(&self, segments: Range<u32>, each: &mut dyn FnMut(Position, &[u8])) -> Result<(), StoreError>;
    /// Where the next append goes: every segment before its segment is closed.
    fn end(&self) -> Position;
    /// The segments on disk, oldest first (retention removes the oldest).
    fn segments(&self) -> Result<Vec<u32>, StoreError>;
    /// Removes the segments last written before `cutoff`; returns how many.
    fn drop_before(&self, cutoff: SystemTime) -> Result<usize, StoreError>;
    /// Replaces the checkpoint (durably: synced, then renamed into place).
    fn save_checkpoint(&self, bytes: &[u8]) -> Result<(), StoreError>;
    /// The last checkpoint saved, if there is a whole one.
    fn load_checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError>;
    /// How many syncs (group commits) the log has made, for metrics.
    fn syncs(&self) -> u64 {
        0
    }
}

/// The event log in a folder of segment files.
pub struct EventLog {
    shared: Arc<Shared>,
    writer: Option<JoinHandle<()>>,
    /// A temporary log deletes its folder when dropped.
    temporary: bool,
}

struct Shared {
    dir: PathBuf,
    /// A segment is closed once it reaches this size (`SEGMENT_BYTES` unless opened sized).
    segment_bytes: u64,
    tail: Mutex<Tail>,
    wake: Condvar,
    /// Read handles by segment, opened on first read.
    readers: Mutex<HashMap<u32, Arc<File>>>,
    /// Why the last write failed, until one succeeds (the store's health says so).
    failing: Mutex<Option<String>>,
    /// Syncs made (one per group commit).
    syncs: std::sync::atomic::AtomicU64,
}

struct Tail {
    /// The segment appends go to, and how many bytes of it are assigned.
    segment: u32,
    len: u64,
    /// Bytes appended but not yet handed to the writer, in append order.
    pending: Vec<Chunk>,
    /// Bytes the writer is writing now: readers find records here until they are in the file.
    writing: Arc<Vec<Chunk>>,
    waiters: Vec<tokio::sync::oneshot::Sender<Result<(), StoreError>>>,
    /// When the oldest unacknowledged pending append was made.
    dirty_since: Option<Instant>,
    /// A caller of `sync` is waiting for everything pending to be written.
    sync_requested: bool,
    stopping: bool,
}

/// Consecutive records of one segment, starting at `start`.
struct Chunk {
    segment: u32,
    start: u64,
    bytes: Vec<u8>,
}

impl Chunk {
    fn record(&self, at: Position) -> Option<Vec<u8>> {
        let offset = u64::from(at.offset);
        if self.segment != at.segment || offset < self.start || offset >= self.start + self.bytes.len() as u64 {
            return None;
        }
        let from = (offset - self.start) as usize;
        decode_one(&self.bytes[from..]).map(|(payload, _)| payload.to_vec())
    }
}

impl EventLog {
    /// Opens (or creates) the log in `dir`, truncating a torn tail.
    pub fn open(dir: &Path) -> Result<EventLog, StoreError> {
        EventLog::open_sized(dir, SEGMENT_BYTES)
    }

    /// Opens the log with segments of at most `segment_bytes`.
    pub fn open_sized(dir: &Path, segment_bytes: u64) -> Result<EventLog, StoreError> {
        std::fs::create_dir_all(dir).map_err(io)?;
        let segments = segments(dir)?;
        if let Some(&last) = segments.last() {
            truncate_torn_tail(&segment_path(dir, last))?;
        }
        // Appends start a segment of their own: a segment is written by one process run.
        let segment = segments.last().map_or(1, |s| s + 1);
        let tail = Tail {
            segment,
            len: 0,
            pending: Vec::new(),
            writing: Arc::new(Vec::new()),
            waiters: Vec::new(),
            dirty_since: None,
            sync_requested: false,
            stopping: false,
        };
        let shared = Arc::new(Shared {
            dir: dir.to_path_buf(),
            segment_bytes,
            tail: Mutex::new(tail),
            wake: Condvar::new(),
            readers: Mutex::default(),
            failing: Mutex::default(),
            syncs: Default::default(),
        });
        let writer = {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("arbiter-event-log".into())
                .spawn(move || run_writer(&shared))
                .map_err(|e| StoreError::CommitterSpawn(Arc::new(e)))?
        };
        Ok(EventLog { shared, writer: Some(writer), temporary: false })
    }

    /// A log in a fresh temporary folder, removed when dropped. For tests.
    pub fn temporary() -> Result<EventLog, StoreError> {
        let dir = std::env::temp_dir().join(format!("arbiter-events-{}-{}", std::process::id(), crate::ids::new_id()));
        let mut log = EventLog::open(&dir)?;
        log.temporary = true;
        Ok(log)
    }

    /// Waits until every record appended so far is written (not necessarily synced).
    pub fn sync(&self) {
        let mut tail = self.shared.lock();
        tail.sync_requested = true;
        self.shared.wake.notify_all();
        while !tail.stopping && (!tail.pending.is_empty() || !tail.writing.is_empty()) {
            tail = self.shared.wake.wait(tail).unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Why the last write failed, while the writes keep failing.
    pub fn failing(&self) -> Option<String> {
        self.shared.failing.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn reader(&self, segment: u32) -> Result<Option<Arc<File>>, StoreError> {
        let mut readers = self.shared.readers.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(file) = readers.get(&segment) {
            return Ok(Some(file.clone()));
        }
        match File::open(segment_path(&self.shared.dir, segment)) {
            Ok(file) => {
                let file = Arc::new(file);
                readers.insert(segment, file.clone());
                Ok(Some(file))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Tail> {
        self.tail.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl EventStore for EventLog {
    fn append(&self, payload: &[u8], acknowledged: bool) -> Result<(Position, Option<Durable>), StoreError> {
        if payload.len() > MAX_RECORD {
            return Err(io(std::io::Error::new(std::io::ErrorKind::InvalidInput, "event record too large")));
        }
        let size = (HEADER + payload.len()) as u64;
        let mut tail = self.shared.lock();
        if tail.stopping {
            return Err(StoreError::CommitterStopped);
        }
        if tail.len + size > self.shared.segment_bytes && tail.len > 0 {
            tail.segment += 1;
            tail.len = 0;
        }
        let at = Position { segment: tail.segment, offset: tail.len as u32 };
        let (segment, start) = (tail.segment, tail.len);
        let chunk = match tail.pending.last_mut() {
            Some(c) if c.segment == segment => c,
            _ => {
                tail.pending.push(Chunk { segment, start, bytes: Vec::with_capacity(64 << 10) });
                tail.pending.last_mut().expect("just pushed")
            }
        };
        encode_into(&mut chunk.bytes, payload);
        tail.len += size;
        let durable = if acknowledged {
            let (waiter, durable) = Durable::channel();
            tail.waiters.push(waiter);
            self.shared.wake.notify_all();
            Some(durable)
        } else {
            if tail.dirty_since.is_none() {
                tail.dirty_since = Some(Instant::now());
                self.shared.wake.notify_all();
            }
            None
        };
        Ok((at, durable))
    }

    fn barrier(&self) -> Durable {
        let (waiter, durable) = Durable::channel();
        let mut tail = self.shared.lock();
        if tail.stopping {
            return Durable::ready(Err(StoreError::CommitterStopped));
        }
        tail.waiters.push(waiter);
        self.shared.wake.notify_all();
        durable
    }

    fn read(&self, at: Position) -> Result<Option<Vec<u8>>, StoreError> {
        {
            let tail = self.shared.lock();
            if let Some(found) = tail.pending.iter().chain(tail.writing.iter()).find_map(|c| c.record(at)) {
                return Ok(Some(found));
            }
        }
        let Some(file) = self.reader(at.segment)? else { return Ok(None) };
        let mut header = [0u8; HEADER];
        if !read_exact_at(&file, &mut header, u64::from(at.offset))? {
            return Ok(None);
        }
        let (len, crc) = split_header(&header);
        if len > MAX_RECORD {
            return Ok(None);
        }
        let mut payload = vec![0u8; len];
        if !read_exact_at(&file, &mut payload, u64::from(at.offset) + HEADER as u64)? {
            return Ok(None);
        }
        Ok((crc32fast::hash(&payload) == crc).then_some(payload))
    }

    fn replay(&self, range: Range<u32>, each: &mut dyn FnMut(Position, &[u8])) -> Result<(), StoreError> {
        self.sync();
        let end = {
            let tail = self.shared.lock();
            Position { segment: tail.segment, offset: tail.len as u32 }
        };
        for segment in segments(&self.shared.dir)?.into_iter().filter(|s| range.contains(s)) {
            if segment > end.segment {
                break;
            }
            let file = match File::open(segment_path(&self.shared.dir, segment)) {
                Ok(f) => f,
                // Dropped by retention meanwhile.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io(e)),
            };
            let limit = if segment == end.segment { u64::from(end.offset) } else { u64::MAX };
            scan(file, limit, |offset, payload| each(Position { segment, offset: offset as u32 }, payload))?;
        }
        Ok(())
    }

    fn segments(&self) -> Result<Vec<u32>, StoreError> {
        let current = self.shared.lock().segment;
        Ok(segments(&self.shared.dir)?.into_iter().filter(|s| *s <= current).collect())
    }

    fn drop_before(&self, cutoff: SystemTime) -> Result<usize, StoreError> {
        let current = self.shared.lock().segment;
        let mut dropped = 0;
        for segment in segments(&self.shared.dir)?.into_iter().filter(|s| *s < current) {
            let path = segment_path(&self.shared.dir, segment);
            let modified = std::fs::metadata(&path).and_then(|m| m.modified()).map_err(io)?;
            if modified < cutoff {
                self.shared.readers.lock().unwrap_or_else(PoisonError::into_inner).remove(&segment);
                std::fs::remove_file(&path).map_err(io)?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    fn syncs(&self) -> u64 {
        self.shared.syncs.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn end(&self) -> Position {
        let tail = self.shared.lock();
        Position { segment: tail.segment, offset: tail.len as u32 }
    }

    fn save_checkpoint(&self, bytes: &[u8]) -> Result<(), StoreError> {
        let dir = &self.shared.dir;
        let staged = dir.join(CHECKPOINT_STAGED);
        let mut framed = Vec::with_capacity(bytes.len() + HEADER);
        encode_into(&mut framed, bytes);
        let mut file = File::create(&staged).map_err(io)?;
        file.write_all(&framed).and_then(|()| file.sync_data()).map_err(io)?;
        std::fs::rename(&staged, dir.join(CHECKPOINT)).map_err(io)?;
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)
    }

    fn load_checkpoint(&self) -> Result<Option<Vec<u8>>, StoreError> {
        let bytes = match std::fs::read(self.shared.dir.join(CHECKPOINT)) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(e)),
        };
        let whole = checkpoint_payload(&bytes);
        if whole.is_none() {
            tracing::warn!("event log: the checkpoint is damaged; the whole log is replayed instead");
        }
        Ok(whole.map(<[u8]>::to_vec))
    }
}

/// The checkpoint file, and the name it is written under before it replaces it.
const CHECKPOINT: &str = "checkpoint";
const CHECKPOINT_STAGED: &str = "checkpoint.new";

/// A checkpoint file's payload: one framed record, any size.
fn checkpoint_payload(bytes: &[u8]) -> Option<&[u8]> {
    let header: &[u8; HEADER] = bytes.get(..HEADER)?.try_into().ok()?;
    let (len, crc) = split_header(header);
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (crc32fast::hash(payload) == crc).then_some(payload)
}

impl Drop for EventLog {
    fn drop(&mut self) {
        self.shared.lock().stopping = true;
        self.shared.wake.notify_all();
        if let Some(writer) = self.writer.take() {
            if writer.join().is_err() {
                tracing::error!("the event log writer thread panicked");
            }
        }
        if self.temporary {
            let _ = std::fs::remove_dir_all(&self.shared.dir);
        }
    }
}

/// The writer thread: takes what is pending when an acknowledgement waits, a `sync` asks,
/// the oldest unacknowledged append is `UNACKNOWLEDGED_FLUSH` old, or the log stops; writes
/// it; syncs when an acknowledgement waits; completes the waiters.
fn run_writer(shared: &Shared) {
    let mut files: Option<(u32, File)> = None;
    let delay = super::injected_flush_delay();
    loop {
        let (chunks, waiters, stopping) = {
            let mut tail = shared.lock();
            loop {
                let due = tail.dirty_since.is_some_and(|t| t.elapsed() >= UNACKNOWLEDGED_FLUSH);
                // A waiter with nothing pending is a barrier: it still gets its sync.
                let ready = !tail.waiters.is_empty() || (!tail.pending.is_empty() && (tail.sync_requested || due));
                if ready || tail.stopping {
                    break;
                }
                let wait = tail.dirty_since.map_or(Duration::from_secs(3600), |t| {
                    UNACKNOWLEDGED_FLUSH.saturating_sub(t.elapsed()).max(Duration::from_millis(1))
                });
                tail = shared.wake.wait_timeout(tail, wait).unwrap_or_else(PoisonError::into_inner).0;
            }
            let chunks = Arc::new(std::mem::take(&mut tail.pending));
            tail.writing = chunks.clone();
            tail.dirty_since = None;
            tail.sync_requested = false;
            (chunks, std::mem::take(&mut tail.waiters), tail.stopping)
        };
        if let (Some(delay), false) = (delay, waiters.is_empty()) {
            std::thread::sleep(delay);
        }
        let sync = !waiters.is_empty() || stopping;
        let result = write_chunks(&shared.dir, &mut files, &chunks, sync);
        if sync {
            shared.syncs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        *shared.failing.lock().unwrap_or_else(PoisonError::into_inner) = result.as_ref().err().map(|e| e.to_string());
        {
            let mut tail = shared.lock();
            tail.writing = Arc::new(Vec::new());
            if let Err(e) = &result {
                tracing::error!(error = %e, "writing the event log failed; the records of that write are dropped");
                cut_back(&shared.dir, &chunks);
                // Later positions must be true: they go to a new segment.
                tail.segment += 1;
                tail.len = 0;
                files = None;
            }
        }
        shared.wake.notify_all();
        for waiter in waiters {
            let _ = waiter.send(result.clone());
        }
        if stopping && shared.lock().pending.is_empty() {
            return;
        }
    }
}

fn write_chunks(dir: &Path, files: &mut Option<(u32, File)>, chunks: &[Chunk], sync: bool) -> Result<(), StoreError> {
    for chunk in chunks {
        if files.as_ref().is_none_or(|(s, _)| *s != chunk.segment) {
            if let (true, Some((_, old))) = (sync, files.as_ref()) {
                old.sync_data().map_err(io)?;
            }
            let file =
                OpenOptions::new().create(true).append(true).open(segment_path(dir, chunk.segment)).map_err(io)?;
            *files = Some((chunk.segment, file));
        }
        let (_, file) = files.as_mut().expect("opened above");
        file.write_all(&chunk.bytes).map_err(io)?;
    }
    if sync {
        if let Some((_, file)) = files.as_ref() {
            file.sync_data().map_err(io)?;
        }
    }
    Ok(())
}

/// After a failed write: truncates each segment it wrote to where the write began, so none
/// of its records (never acknowledged) is found later. Best effort: if the disk refuses
/// this too, a restart may find some of them.
fn cut_back(dir: &Path, chunks: &[Chunk]) {
    let mut starts: HashMap<u32, u64> = HashMap::new();
    for c in chunks {
        starts.entry(c.segment).or_insert(c.start);
    }
    for (segment, start) in starts {
        let path = segment_path(dir, segment);
        let cut = OpenOptions::new().write(true).open(&path).and_then(|f| {
            if f.metadata()?.len() > start {
                f.set_len(start)?;
            }
            f.sync_data()
        });
        match cut {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => tracing::error!(segment = %path.display(), error = %e, "could not cut a failed write off"),
        }
    }
}

fn encode_into(out: &mut Vec<u8>, payload: &[u8]) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

fn split_header(header: &[u8; HEADER]) -> (usize, u32) {
    let len = u32::from_le_bytes(header[..4].try_into().expect("4 bytes")) as usize;
    let crc = u32::from_le_bytes(header[4..].try_into().expect("4 bytes"));
    (len, crc)
}

/// The first whole record of `bytes` and its framed size.
fn decode_one(bytes: &[u8]) -> Option<(&[u8], usize)> {
    let header: &[u8; HEADER] = bytes.get(..HEADER)?.try_into().ok()?;
    let (len, crc) = split_header(header);
    let payload = bytes.get(HEADER..HEADER.checked_add(len)?)?;
    (len <= MAX_RECORD && crc32fast::hash(payload) == crc).then_some((payload, HEADER + len))
}

/// Calls `each(offset, payload)` for the whole records of a segment before `limit`; returns
/// where the last whole record ends.
fn scan(file: File, limit: u64, mut each: impl FnMut(u64, &[u8])) -> Result<u64, StoreError> {
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let (mut offset, mut header, mut payload) = (0u64, [0u8; HEADER], Vec::new());
    while offset < limit {
        if !fill(&mut reader, &mut header)? {
            break;
        }
        let (len, crc) = split_header(&header);
        if len > MAX_RECORD {
            break;
        }
        payload.resize(len, 0);
        if !fill(&mut reader, &mut payload)? || crc32fast::hash(&payload) != crc {
            break;
        }
        each(offset, &payload);
        offset += (HEADER + len) as u64;
    }
    Ok(offset)
}

/// Fills `buf` from `reader`; false at a clean or torn end.
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> Result<bool, StoreError> {
    match reader.read_exact(buf) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io(e)),
    }
}

fn read_exact_at(file: &File, buf: &mut [u8], offset: u64) -> Result<bool, StoreError> {
    match file.read_exact_at(buf, offset) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(io(e)),
    }
}

fn truncate_torn_tail(path: &Path) -> Result<(), StoreError> {
    let file = File::open(path).map_err(io)?;
    let size = file.metadata().map_err(io)?.len();
    let whole = scan(file, u64::MAX, |_, _| {})?;
    if whole < size {
        tracing::warn!(segment = %path.display(), kept = whole, dropped = size - whole, "event log: truncated a torn tail");
        OpenOptions::new().write(true).open(path).and_then(|f| f.set_len(whole)).map_err(io)?;
    }
    Ok(())
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:010}.log"))
}

/// The folder's segment numbers, in order.
fn segments(dir: &Path) -> Result<Vec<u32>, StoreError> {
    let mut out: Vec<u32> = std::fs::read_dir(dir)
        .map_err(io)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    out.sort_unstable();
    Ok(out)
}

fn io(e: std::io::Error) -> StoreError {
    StoreError::Io(Arc::new(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(log: &EventLog) -> Vec<(Position, Vec<u8>)> {
        let mut out = Vec::new();
        log.replay(0..u32::MAX, &mut |at, payload| out.push((at, payload.to_vec()))).unwrap();
        out
    }

    #[test]
    fn appended_records_read_back_by_position_and_in_order() {
        let log = EventLog::temporary().unwrap();
        let (a, _) = log.append(b"first", false).unwrap();
        let (b, durable) = log.append(b"second", true).unwrap();
        assert!(a < b);
        assert_eq!(log.read(a).unwrap().as_deref(), Some(&b"first"[..]), "readable before it is written");
        durable.unwrap().wait().unwrap();
        assert_eq!(log.read(b).unwrap().as_deref(), Some(&b"second"[..]));
        assert_eq!(log.read(Position { segment: b.segment, offset: b.offset + 1 }).unwrap(), None);
        assert_eq!(records(&log), vec![(a, b"first".to_vec()), (b, b"second".to_vec())]);
    }

    #[test]
    fn a_torn_tail_is_cut_at_the_last_whole_record_and_the_rest_stays() {
        let dir = std::env::temp_dir().join(format!("arbiter-events-torn-{}", crate::ids::new_id()));
        let (a, b) = {
            let log = EventLog::open(&dir).unwrap();
            let (a, _) = log.append(b"kept", false).unwrap();
            let (b, d) = log.append(b"also kept", true).unwrap();
            d.unwrap().wait().unwrap();
            (a, b)
        };
        let path = segment_path(&dir, a.segment);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2]).unwrap();
        drop(f);
        let log = EventLog::open(&dir).unwrap();
        assert_eq!(records(&log), vec![(a, b"kept".to_vec()), (b, b"also kept".to_vec())]);
        let (c, d) = log.append(b"after", true).unwrap();
        d.unwrap().wait().unwrap();
        assert!(c.segment > b.segment, "a new run appends to a new segment");
        assert_eq!(log.read(b).unwrap().as_deref(), Some(&b"also kept"[..]));
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn unacknowledged_records_reach_the_file_without_a_sync_request() {
        let log = EventLog::temporary().unwrap();
        let (a, _) = log.append(b"quiet", false).unwrap();
        std::thread::sleep(UNACKNOWLEDGED_FLUSH * 3);
        let on_disk = std::fs::read(segment_path(&log.shared.dir, a.segment)).unwrap();
        assert_eq!(decode_one(&on_disk).map(|(p, _)| p), Some(&b"quiet"[..]));
    }

    #[test]
    fn retention_drops_closed_segments_only() {
        let dir = std::env::temp_dir().join(format!("arbiter-events-retention-{}", crate::ids::new_id()));
        {
            let log = EventLog::open(&dir).unwrap();
            log.append(b"old", true).unwrap().1.unwrap().wait().unwrap();
        }
        let log = EventLog::open(&dir).unwrap();
        let (now, d) = log.append(b"new", true).unwrap();
        d.unwrap().wait().unwrap();
        let future = SystemTime::now() + Duration::from_secs(60);
        assert_eq!(log.drop_before(future).unwrap(), 1, "the closed segment goes, the current one stays");
        assert_eq!(records(&log), vec![(now, b"new".to_vec())]);
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_barrier_completes_after_what_was_appended_before_it_is_synced() {
        let log = EventLog::temporary().unwrap();
        let (a, _) = log.append(b"unacknowledged", false).unwrap();
        log.barrier().wait().unwrap();
        let on_disk = std::fs::read(segment_path(&log.shared.dir, a.segment)).unwrap();
        assert_eq!(decode_one(&on_disk).map(|(p, _)| p), Some(&b"unacknowledged"[..]));
        log.barrier().wait().expect("a barrier with nothing pending completes too");
    }

    #[test]
    fn a_checkpoint_is_replaced_whole_and_a_damaged_one_is_none() {
        let log = EventLog::temporary().unwrap();
        assert_eq!(log.load_checkpoint().unwrap(), None);
        log.save_checkpoint(b"first").unwrap();
        log.save_checkpoint(b"second").unwrap();
        assert_eq!(log.load_checkpoint().unwrap().as_deref(), Some(&b"second"[..]));
        let path = log.shared.dir.join(CHECKPOINT);
        let mut bytes = std::fs::read(&path).unwrap();
        *bytes.last_mut().unwrap() ^= 1;
        std::fs::write(&path, bytes).unwrap();
        assert_eq!(log.load_checkpoint().unwrap(), None, "a CRC mismatch is no checkpoint");
    }

    #[test]
    fn a_failed_write_is_cut_off_its_segment() {
        let log = EventLog::temporary().unwrap();
        let (a, d) = log.append(b"kept", true).unwrap();
        d.unwrap().wait().unwrap();
        let (b, d) = log.append(b"failed", true).unwrap();
        d.unwrap().wait().unwrap();
        // As if the second write had failed: the writer cuts its chunk off again.
        let chunk = Chunk { segment: b.segment, start: u64::from(b.offset), bytes: Vec::new() };
        cut_back(&log.shared.dir, &[chunk]);
        assert_eq!(log.read(b).unwrap(), None);
        assert_eq!(records(&log), vec![(a, b"kept".to_vec())]);
    }

    #[test]
    fn replay_keeps_to_its_segment_range() {
        let dir = std::env::temp_dir().join(format!("arbiter-events-range-{}", crate::ids::new_id()));
        let log = EventLog::open_sized(&dir, 64).unwrap();
        let at: Vec<Position> = (0..6u8).map(|i| log.append(&[i; 40], false).unwrap().0).collect();
        assert!(at.windows(2).all(|w| w[1].segment == w[0].segment + 1), "one 48-byte record per segment");
        let mut seen = Vec::new();
        log.replay(at[2].segment..at[4].segment, &mut |p, _| seen.push(p)).unwrap();
        assert_eq!(seen, vec![at[2], at[3]]);
        assert_eq!(log.end(), Position { segment: at[5].segment, offset: 48 });
        drop(log);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
