//! The decision log on the request path: encoding one decision record and appending it
//! to the event log (the in-memory tail; the writer thread writes it out within 200 ms).
//! Prints each record's size on disk (framing included).
//! Run: `cargo bench --bench eventlog`.

use std::hint::black_box;

use arbiter::demo;
use arbiter::engine::NoSignals;
use arbiter::store::eventlog::{EventLog, EventStore};
use arbiter::tenant::interaction::decision_record;
use criterion::{criterion_group, criterion_main, Criterion};

fn log(c: &mut Criterion) {
    let log = EventLog::temporary().unwrap();
    let tutorial = demo::tutorial().unwrap();
    let decision = tutorial.flow.decide(&demo::request(), &NoSignals, false);
    let request = demo::request();
    let record = decision_record("default", &decision, &request, 7);
    let s = demo::synthetic(100, 3).unwrap();
    let s_decision = s.flow.decide(&demo::synthetic_request(), &NoSignals, false);
    let s_record = decision_record("bench-s", &s_decision, &demo::synthetic_request(), 7);
    println!(
        "record bytes on disk (8-byte frame included): tutorial {} ({} offers), S {} ({} offers)",
        record.len() + 8,
        decision.count,
        s_record.len() + 8,
        s_decision.count
    );
    c.bench_function("eventlog/encode_tutorial_decision", |b| {
        b.iter(|| decision_record(black_box("default"), black_box(&decision), &request, 7))
    });
    c.bench_function("eventlog/append_tutorial_record", |b| b.iter(|| log.append(black_box(&record), false).unwrap()));
    c.bench_function("eventlog/encode_and_append_tutorial", |b| {
        b.iter(|| log.append(&decision_record("default", black_box(&decision), &request, 7), false).unwrap())
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(std::time::Duration::from_secs(3));
    targets = log
}
criterion_main!(benches);
