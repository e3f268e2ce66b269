//! Learning throughput: durable `/respond` through the tenant actor, and uplift training.
//!
//! * respond: N concurrent clients (tokio tasks), each sending `TenantHandle::respond` for
//!   logged decisions and waiting for the durable reply, for a fixed time; reports
//!   responds/s and p50/p99/max latency from every recorded respond. This is the path
//!   `/respond` takes after JSON parsing: idempotency check, log lookup, write, group
//!   commit, counters.
//! * training: T-, X- and DR-learner on 100,000 interactions × 10 features (one offer),
//!   the median of 5 fits each, and what a retrain costs per offer: all three fitted and
//!   one chosen by 5-fold cross-validation (`fit_selected`, median of 3).
//!
//! Run: `cargo bench --bench learn` (`ARBITER_BENCH_SECS` sets seconds per respond
//! scenario, default 3). Data goes to a fresh directory under the system temp dir.

mod support;

use support::{millis, percentile};

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter::demo;
use arbiter::engine::RecommendRequest;
use arbiter::learn::uplift::{fit_selected, Learner, UpliftModel, UpliftRow};
use arbiter::store::SledStore;
use arbiter::tenant::interaction::RespondInput;
use arbiter::tenant::{RecommendOptions, Registry, TenantHandle};

fn main() {
    let secs = std::env::var("ARBITER_BENCH_SECS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    respond(Duration::from_secs(secs));
    training();
}

fn respond(run_for: Duration) {
    let dir = std::env::temp_dir().join(format!("arbiter-bench-respond-{}", arbiter::ids::new_id()));
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let registry = Registry::start(Arc::new(SledStore::open(&dir).unwrap())).unwrap();
        let t = registry.ensure_tenant("bench").await.unwrap();
        tutorial(&t).await;
        println!(
            "respond: durable TenantHandle::respond through the tenant actor, {} s per scenario",
            run_for.as_secs()
        );
        println!("{:<10} {:>10} {:>9} {:>9} {:>9}", "clients", "responds/s", "p50", "p99", "max");
        for clients in [1, 16, 64] {
            let (mut latencies, elapsed) = run_clients(&t, clients, run_for).await;
            latencies.sort_unstable();
            println!(
                "{clients:<10} {:>10.0} {:>9} {:>9} {:>9}",
                latencies.len() as f64 / elapsed.as_secs_f64(),
                millis(percentile(&latencies, 0.50)),
                millis(percentile(&latencies, 0.99)),
                millis(latencies.last().copied().unwrap_or_default()),
            );
        }
        registry.shutdown();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// Each client logs a decision for cust_42 and responds to it, again and again.
async fn run_clients(t: &Arc<TenantHandle>, clients: usize, run_for: Duration) -> (Vec<Duration>, Duration) {
    let start = Instant::now();
    let deadline = start + run_for;
    let mut tasks = Vec::new();
    for client in 0..clients {
        let t = t.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let req = RecommendRequest { customer_id: "cust_42".into(), ..demo::request() };
            let mut n = 0u64;
            while Instant::now() < deadline {
                let d = t.recommend(&req, RecommendOptions::default()).unwrap();
                let input = RespondInput {
                    customer_id: "cust_42".into(),
                    recommendation_id: Some(d.recommendation_id.clone()),
                    rank: Some(1),
                    outcome: "click".into(),
                    idempotency_key: Some(format!("{client}-{n}-{}", d.recommendation_id)),
                    ..RespondInput::default()
                };
                n += 1;
                let sent = Instant::now();
                t.respond(input).await.expect("respond");
                latencies.push(sent.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    (all, start.elapsed())
}

async fn tutorial(t: &TenantHandle) {
    // No holdout: every decision has an offer at rank 1 to respond to.
    let flow = demo::FLOW.replace(r#""enabled": true"#, r#""enabled": false"#);
    demo::send_tutorial(t, None, &flow).await.unwrap();
}

fn training() {
    let rows = rows(100_000, 10);
    println!("uplift training: 100,000 interactions × 10 features, 10% held out; median of 5 fits");
    let time = |runs: usize, fit: &dyn Fn()| {
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let start = Instant::now();
                fit();
                start.elapsed()
            })
            .collect();
        times.sort_unstable();
        format!("median {} (min {}, max {})", millis(times[runs / 2]), millis(times[0]), millis(times[runs - 1]))
    };
    for learner in Learner::ALL {
        let fit = || drop(std::hint::black_box(UpliftModel::fit(&rows, learner).unwrap()));
        println!("{learner:?}: {}", time(5, &fit));
    }
    let select = || drop(std::hint::black_box(fit_selected(&rows).unwrap()));
    println!("fit_selected (3 learners, 5-fold choice, refit on all rows): {}", time(3, &select));
}

/// A 10% holdout population whose treated conversion rises with the first feature.
fn rows(n: usize, width: usize) -> Vec<UpliftRow> {
    let mut rng = arbiter::learn::rng::SplitMix64::new(7);
    let mut next = move || rng.uniform();
    (0..n)
        .map(|i| {
            let features: Vec<f64> = (0..width).map(|_| next()).collect();
            let treated = i % 10 != 0;
            let p = 0.1 + 0.2 * features[1] + if treated { 0.3 * features[0] } else { 0.0 };
            UpliftRow { treated, converted: next() < p, features }
        })
        .collect()
}
