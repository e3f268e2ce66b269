//! Acknowledged writes survive a restart and a SIGKILL.
//!
//! The crash test re-executes this test binary as a child process: with `ARBITER_STORE_CHILD`
//! set to a directory, `crash_child_writer` becomes a writer that prints `acked N` after each
//! acknowledged write; the parent kills it with SIGKILL at a varying moment, reopens the store
//! and checks every acknowledged write is there.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbiter::store::keys::{self, Kind};
use arbiter::store::{Batch, SledStore, Storage};

/// Set (to the store directory) only in the child process of the crash test.
const CHILD_ENV: &str = "ARBITER_STORE_CHILD";
const CHILD_TEST: &str = "crash_child_writer";
const CRASH_ROUNDS: u64 = 6;
const CHILD_WRITERS: usize = 4;
/// Key prefix of the crash test's writes.
const CRASH_PREFIX: &str = "crash/";

/// A fresh directory under the system temp dir, removed on drop.
fn temp_dir(name: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("arbiter-store-{name}-")).tempdir().unwrap()
}

#[test]
fn acknowledged_writes_survive_reopen() {
    let dir = temp_dir("reopen");
    {
        let store = SledStore::open(dir.path()).unwrap();
        for i in 0..100 {
            let mut batch = Batch::new();
            batch.put(keys::key("acme", Kind::Offer, &[&format!("o{i}")]), format!("offer {i}"));
            store.write(batch).unwrap().wait().unwrap();
        }
        let mut batch = Batch::new();
        batch.delete(keys::key("acme", Kind::Offer, &["o7"])).put(keys::key("acme", Kind::Meta, &[]), "tenant");
        store.write(batch).unwrap().wait().unwrap();
        write_awaited_rows(&store);
    }

    let store = SledStore::open(dir.path()).unwrap();
    let offers = store.scan_prefix(&keys::prefix("acme", Kind::Offer)).unwrap();
    assert_eq!(offers.len(), 99);
    for (key, value) in offers {
        let id = keys::last_component(&key).unwrap();
        assert_eq!(String::from_utf8(value).unwrap(), format!("offer {}", &id[1..]));
    }
    assert_eq!(store.get(&keys::key("acme", Kind::Offer, &["o7"])).unwrap(), None);
    assert_eq!(store.get(&keys::key("acme", Kind::Meta, &[])).unwrap().as_deref(), Some(&b"tenant"[..]));
    assert_eq!(store.scan_prefix(&keys::sub_prefix("acme", Kind::Row, &["s/1"])).unwrap().len(), 50);
}

/// 50 rows written by concurrent tokio tasks, each awaiting its acknowledgement.
fn write_awaited_rows(store: &SledStore) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).build().unwrap();
    runtime.block_on(async {
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut batch = Batch::new();
                    batch.put(keys::key("acme", Kind::Row, &["s/1", &format!("r{i}")]), "{}");
                    store.write(batch).unwrap().await
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap().unwrap();
        }
    });
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let dir = temp_dir("crash");
    let mut acked = BTreeSet::new();
    for round in 0..CRASH_ROUNDS {
        let acked_this_round = run_child_until_killed(dir.path(), kill_delay(round));
        assert!(!acked_this_round.is_empty(), "round {round}: the child acknowledged nothing");
        acked.extend(acked_this_round);
        let store = SledStore::open(dir.path()).unwrap();
        check_recovered(&store, &acked, round);
    }
}

/// Between 50 and 300 ms, varied by the clock and the round.
fn kill_delay(round: u64) -> Duration {
    let nanos = u64::from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos());
    Duration::from_millis(50 + (nanos / 1000 + round * 7919) % 251)
}

/// Kills the child if the parent test fails midway, so no writer outlives it.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the writer child, lets it run `delay` past its first acknowledgement, SIGKILLs it and
/// returns every key number it acknowledged.
fn run_child_until_killed(dir: &Path, delay: Duration) -> Vec<u64> {
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, dir)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let acks = read_acks(child.0.stdout.take().unwrap());
    let first = acks.recv_timeout(Duration::from_secs(30)).expect("the child never acknowledged a write");
    std::thread::sleep(delay);
    child.0.kill().unwrap(); // SIGKILL on Unix: no destructors, no final flush.
    child.0.wait().unwrap();
    // The pipe closes with the child, so this drains every line it printed and then ends.
    std::iter::once(first).chain(acks).collect()
}

/// Forwards each `acked N` line of the child's stdout (libtest prints other lines too).
fn read_acks(stdout: std::process::ChildStdout) -> mpsc::Receiver<u64> {
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(n) = line.strip_prefix("acked ").and_then(|n| n.parse().ok()) {
                if sender.send(n).is_err() {
                    break;
                }
            }
        }
    });
    receiver
}

/// Every acknowledged write is present; every write present (acknowledged or not) is whole —
/// both keys of its batch, with the right values.
fn check_recovered(store: &SledStore, acked: &BTreeSet<u64>, round: u64) {
    for &n in acked {
        for half in ["a", "b"] {
            let value = store.get(crash_key(n, half).as_bytes()).unwrap();
            assert_eq!(value, Some(crash_value(n)), "round {round}: acknowledged write {n}{half} lost");
        }
    }
    let present = store.scan_prefix(CRASH_PREFIX.as_bytes()).unwrap();
    assert_eq!(present.len() % 2, 0, "round {round}: a torn batch");
    for pair in present.chunks(2) {
        let n = crash_number(&pair[0].0);
        assert_eq!(pair[0].0, crash_key(n, "a").into_bytes(), "round {round}: a torn batch");
        assert_eq!(pair[1].0, crash_key(n, "b").into_bytes(), "round {round}: a torn batch");
        assert!(pair[0].1 == crash_value(n) && pair[1].1 == crash_value(n), "round {round}: value {n} corrupt");
    }
}

fn crash_key(n: u64, half: &str) -> String {
    format!("{CRASH_PREFIX}{n:010}/{half}")
}

fn crash_number(key: &[u8]) -> u64 {
    let key = std::str::from_utf8(key).unwrap();
    key[CRASH_PREFIX.len()..CRASH_PREFIX.len() + 10].parse().unwrap()
}

/// About 200 bytes, different for every write.
fn crash_value(n: u64) -> Vec<u8> {
    format!("{n:010}-{}", "v".repeat(189)).into_bytes()
}

/// The child side of `acknowledged_writes_survive_sigkill`; returns at once in a normal run.
/// Several writer threads, so that flushes (and so the crash's cut in sled's log) fall in the
/// middle of other writers' batches.
#[test]
fn crash_child_writer() {
    let Some(dir) = std::env::var_os(CHILD_ENV) else { return };
    let store = SledStore::open(Path::new(&dir)).unwrap();
    // Continue after the highest write present, acknowledged or not, so nothing is overwritten.
    let start = store.scan_prefix(CRASH_PREFIX.as_bytes()).unwrap().last().map_or(0, |(key, _)| crash_number(key) + 1);
    let next = AtomicU64::new(start);
    // Bounded, so a writer orphaned by a dead parent stops by itself.
    let deadline = Instant::now() + Duration::from_secs(60);
    std::thread::scope(|scope| {
        for _ in 0..CHILD_WRITERS {
            scope.spawn(|| write_until(&store, &next, deadline));
        }
    });
}

/// Writes numbered 2-put batches, printing `acked N` once each is durable.
fn write_until(store: &SledStore, next: &AtomicU64, deadline: Instant) {
    while Instant::now() < deadline {
        let n = next.fetch_add(1, Ordering::Relaxed);
        let mut batch = Batch::new();
        batch.put(crash_key(n, "a"), crash_value(n)).put(crash_key(n, "b"), crash_value(n));
        store.write(batch).unwrap().wait().unwrap();
        let mut stdout = std::io::stdout().lock();
        // The parent stops reading (a write error) only when it is gone: stop too.
        if writeln!(stdout, "acked {n}").and_then(|()| stdout.flush()).is_err() {
            return;
        }
    }
}

/// Unacknowledged writes (the decision log) are readable at once and flushed by the
/// committer within `UNACKNOWLEDGED_FLUSH`, without one flush per write.
#[test]
fn unacknowledged_writes_are_flushed_in_the_background() {
    use arbiter::store::{Batch, SledStore, Storage, UNACKNOWLEDGED_FLUSH};
    let store = SledStore::temporary().unwrap();
    let before = store.flush_count();
    for i in 0..1000 {
        let mut b = Batch::new();
        b.put(format!("log/{i}").into_bytes(), b"x".to_vec());
        store.write_unacknowledged(b).unwrap();
    }
    assert_eq!(store.get(b"log/999").unwrap().as_deref(), Some(&b"x"[..]));
    std::thread::sleep(UNACKNOWLEDGED_FLUSH * 3);
    let flushes = store.flush_count() - before;
    assert!((1..=3).contains(&flushes), "{flushes} flushes for 1,000 unacknowledged writes");
}
