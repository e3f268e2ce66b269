//! The tenant runtime: publish latency (a draft with 1,000 rules → live, including the
//! durable write) and the read-path cost of loading a snapshot.
//! Run: `cargo bench --bench tenant`.

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use arbiter::demo;
use arbiter::store::SledStore;
use arbiter::tenant::command::Publish;
use arbiter::tenant::Registry;
use criterion::{criterion_group, criterion_main, Criterion};

fn tenant(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("arbiter-bench-tenant-{}", std::process::id()));
    let store = Arc::new(SledStore::open(&dir).unwrap());
    let registry = Registry::start(store).unwrap();
    // 1,000 offers with one rule each: a 1,000-rule draft.
    let synthetic = demo::synthetic(1000, 1).unwrap();
    let flow_id = synthetic.flow_id.clone();
    let handle = registry.adopt("bench", synthetic.catalog);
    c.bench_function("publish_1000_rules_to_live", |b| {
        b.iter(|| runtime.block_on(handle.ask(Publish { id: flow_id.clone(), notes: None })).unwrap())
    });
    c.bench_function("snapshot_load_flow", |b| b.iter(|| handle.flow(black_box("synthetic")).unwrap()));
    registry.shutdown();
    std::fs::remove_dir_all(&dir).ok();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5)).warm_up_time(Duration::from_secs(1));
    targets = tenant
}
criterion_main!(benches);
