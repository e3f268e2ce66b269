//! Acknowledged-write throughput and latency of the store: group commit (`SledStore`, one flush
//! for every write queued while the previous flush ran) against a flush-per-write baseline
//! (sled `insert` then `flush` in each writer), in the same run, on the same disk.
//!
//! Each scenario runs N concurrent writers, each doing sequential acknowledged writes of one
//! 200-byte value (or a batch of two, where stated) for a fixed time, and reports writes/s and p50/p99/max latency computed from
//! every recorded write (criterion measures per-iteration time, not this).
//!
//! Run: `cargo bench --bench store` (`ARBITER_BENCH_SECS` sets seconds per scenario, default 3).
//! Data goes to a fresh directory under the system temp dir, removed afterwards.

mod support;

use support::{millis, percentile};

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use arbiter::store::{Batch, Op, SledStore, Storage};

const VALUE_BYTES: usize = 200;

fn main() {
    let secs = std::env::var("ARBITER_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let run_for = Duration::from_secs(secs);
    println!("store: acknowledged writes of {VALUE_BYTES}-byte values, {secs} s per scenario, temp dir on disk");
    println!(
        "{:<34} {:>7} {:>10} {:>9} {:>9} {:>9} {:>12}",
        "scenario", "writers", "writes/s", "p50", "p99", "max", "writes/flush"
    );
    for writers in [1, 16, 64] {
        report("group commit, threads + wait()", writers, group_commit_threads(writers, 1, run_for));
    }
    report("group commit, tokio tasks + .await", 64, group_commit_tasks(64, run_for));
    report("group commit, 2-put batches", 16, group_commit_threads(16, 2, run_for));
    for writers in [1, 16, 64] {
        report("flush per write, threads", writers, flush_per_write_threads(writers, run_for));
    }
}

/// What one scenario measured.
struct Run {
    latencies: Vec<Duration>,
    elapsed: Duration,
    /// `None` for the baseline, where it is 1 by construction.
    flushes: Option<u64>,
}

fn report(name: &str, writers: usize, mut run: Run) {
    run.latencies.sort_unstable();
    let writes = run.latencies.len();
    let per_flush = run.flushes.map_or("1".to_string(), |flushes| format!("{:.1}", writes as f64 / flushes as f64));
    println!(
        "{name:<34} {writers:>7} {:>10.0} {:>9} {:>9} {:>9} {per_flush:>12}",
        writes as f64 / run.elapsed.as_secs_f64(),
        millis(percentile(&run.latencies, 0.50)),
        millis(percentile(&run.latencies, 0.99)),
        millis(run.latencies.last().copied().unwrap_or_default()),
    );
}

/// N threads, each writing batches of `puts` puts and blocking on `Durable::wait` until the
/// deadline.
fn group_commit_threads(writers: usize, puts: usize, run_for: Duration) -> Run {
    let dir = BenchDir::new("group-threads");
    let store = SledStore::open(&dir.0).unwrap();
    let (latencies, elapsed) = run_threads(writers, run_for, |writer, n| {
        store.write(batch(writer, n, puts)).unwrap().wait().unwrap();
    });
    Run { latencies, elapsed, flushes: Some(store.flush_count()) }
}

/// N tokio tasks on a 2-worker runtime (how tenant actors write), each awaiting its `Durable`.
fn group_commit_tasks(writers: usize, run_for: Duration) -> Run {
    let dir = BenchDir::new("group-tasks");
    let store = SledStore::open(&dir.0).unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_time().build().unwrap();
    let started = Instant::now();
    let deadline = started + run_for;
    let latencies = runtime.block_on(async {
        let tasks: Vec<_> = (0..writers)
            .map(|writer| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    for n in (0..).take_while(|_| Instant::now() < deadline) {
                        let start = Instant::now();
                        store.write(batch(writer, n, 1)).unwrap().await.unwrap();
                        latencies.push(start.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        let mut all = Vec::new();
        for task in tasks {
            all.extend(task.await.unwrap());
        }
        all
    });
    Run { latencies, elapsed: started.elapsed(), flushes: Some(store.flush_count()) }
}

/// The baseline: N threads on one sled database, each applying its write and flushing it.
fn flush_per_write_threads(writers: usize, run_for: Duration) -> Run {
    let dir = BenchDir::new("flush-per-write");
    // The same sled settings as `SledStore`.
    let db = sled::Config::new()
        .path(&dir.0)
        .cache_capacity(256 * 1024 * 1024)
        .mode(sled::Mode::HighThroughput)
        .flush_every_ms(None)
        .open()
        .unwrap();
    let (latencies, elapsed) = run_threads(writers, run_for, |writer, n| {
        for op in batch(writer, n, 1).into_ops() {
            let Op::Put { key, value } = op else { unreachable!("the bench only puts") };
            db.insert(key, value).unwrap();
        }
        db.flush().unwrap();
    });
    Run { latencies, elapsed, flushes: None }
}

/// Runs `write(writer, n)` in a loop on `writers` threads until `run_for` has passed; returns
/// every write's latency and the wall time until the last thread finished.
fn run_threads(writers: usize, run_for: Duration, write: impl Fn(usize, u64) + Sync) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let deadline = started + run_for;
    let write = &write;
    let latencies = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..writers)
            .map(|writer| {
                scope.spawn(move || {
                    let mut latencies = Vec::new();
                    for n in (0..).take_while(|_| Instant::now() < deadline) {
                        let start = Instant::now();
                        write(writer, n);
                        latencies.push(start.elapsed());
                    }
                    latencies
                })
            })
            .collect();
        threads.into_iter().flat_map(|thread| thread.join().unwrap()).collect()
    });
    (latencies, started.elapsed())
}

/// One write: `puts` puts of a `VALUE_BYTES` value under keys unique to the writer.
fn batch(writer: usize, n: u64, puts: usize) -> Batch {
    let mut batch = Batch::new();
    for put in 0..puts {
        batch.put(format!("bench/{writer:03}/{n:010}/{put}"), vec![b'v'; VALUE_BYTES]);
    }
    batch
}

/// A fresh directory under the system temp dir, removed on drop.
struct BenchDir(PathBuf);

impl BenchDir {
    fn new(name: &str) -> BenchDir {
        let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
        BenchDir(std::env::temp_dir().join(format!("arbiter-bench-{name}-{nanos}")))
    }
}

impl Drop for BenchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
