//! A large decision log, generated in-process (not over HTTP), and what it costs: the
//! experiment report, a retrain's memory, a draft simulated on the last 100,000 requests,
//! a checkpoint fold, and a restart with and without the checkpoint.
//!
//! Run: `cargo bench --bench restart` (1,000,000 decisions; `ARBITER_RESTART_DECISIONS`
//! sets another count). Prints one line per figure; BENCHMARKS.md quotes them.
//!
//! The tutorial's tenant with 100,000 customers (rows varied so the rules pass and fail),
//! a decision per request through `TenantHandle::recommend` (the server's path, log append
//! included), and a click on rank 1 for every tenth treated decision through
//! `TenantHandle::respond` (acknowledged: group commits of 512 concurrent responds).

use std::sync::Arc;
use std::time::{Duration, Instant};

use arbiter::demo;
use arbiter::engine::RecommendRequest;
use arbiter::store::SledStore;
use arbiter::tenant::interaction::RespondInput;
use arbiter::tenant::{measure, Registry};
use serde_json::json;

const CUSTOMERS: usize = 100_000;

/// VmRSS and VmHWM of this process, in MB.
fn memory_mb() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn rows() -> Vec<serde_json::Value> {
    (0..CUSTOMERS)
        .map(|i| {
            let tier = ["basic", "premium", "private"][i % 3];
            json!({"customer_id": format!("c{i}"), "tier": tier,
                "tenureMonths": (i % 60) as f64, "hasChecking": i % 2 == 0, "hasSavings": i % 5 == 0,
                "hasCreditCard": i % 7 == 0, "hasMortgage": i % 3 == 0, "hasBrokerage": i % 11 == 0,
                "avgMonthlyBalance": (i % 100) as f64 * 1000.0})
        })
        .collect()
}

fn dir_mb(dir: &std::path::Path) -> f64 {
    let bytes: u64 =
        std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0);
    bytes as f64 / (1 << 20) as f64
}

async fn generate(registry: &Registry, decisions: usize) {
    let t = registry.ensure_tenant("default").await.unwrap();
    demo::send_tutorial(&t, Some(rows()), demo::FLOW).await.unwrap();
    let started = Instant::now();
    let mut responds = Vec::new();
    let mut responded = 0;
    for n in 0..decisions {
        let req = RecommendRequest { customer_id: format!("c{}", n % CUSTOMERS), ..demo::request() };
        let d = t.recommend(&req, Default::default()).unwrap();
        if n % 10 == 0 && !d.decisions.is_empty() {
            responds.push(RespondInput {
                customer_id: d.customer_id.to_string(),
                recommendation_id: Some(d.recommendation_id.clone()),
                rank: Some(1),
                outcome: "click".into(),
                idempotency_key: Some(format!("k{n}")),
                ..RespondInput::default()
            });
        }
        if responds.len() == 512 || (n + 1 == decisions && !responds.is_empty()) {
            responded += responds.len();
            let batch = std::mem::take(&mut responds);
            let replies = futures_util::future::join_all(batch.into_iter().map(|r| t.respond(r))).await;
            replies.into_iter().for_each(|r| drop(r.unwrap()));
        }
    }
    println!("generated: {decisions} decisions and {responded} responses in {:.1} s", started.elapsed().as_secs_f64());
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    // The start-up figures (`learned state restored`, `event log checkpointed`) on stderr.
    let filter = tracing_subscriber::EnvFilter::new("arbiter=info");
    tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    let decisions: usize =
        std::env::var("ARBITER_RESTART_DECISIONS").ok().and_then(|n| n.parse().ok()).unwrap_or(1_000_000);
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let dir = std::env::temp_dir().join(format!("arbiter-bench-restart-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    runtime.block_on(async {
        let store = Arc::new(SledStore::open(&dir).unwrap());
        let registry = Registry::start(store.clone()).unwrap();
        generate(&registry, decisions).await;
        let t = registry.tenant("default").unwrap();
        let flow = t.flow("cross-sell").unwrap();
        println!("event log on disk: {:.0} MB", dir_mb(&dir.join("events")));

        let times: Vec<Duration> = (0..200)
            .map(|_| {
                let started = Instant::now();
                std::hint::black_box(measure::experiment_results(
                    &flow,
                    t.learning.experiments.totals(&flow.key, arbiter::tenant::interaction::conversion_mask(&flow)),
                ));
                started.elapsed()
            })
            .collect();
        println!("experiment results: median {:.3} ms", median(times).as_secs_f64() * 1e3);

        let (rss, _) = memory_mb();
        let started = Instant::now();
        t.train_uplift(&flow).unwrap();
        let (after, peak) = memory_mb();
        println!(
            "retrain: {:.1} s; RSS {rss:.0} -> {after:.0} MB (+{:.0} MB), peak {peak:.0} MB",
            started.elapsed().as_secs_f64(),
            after - rss
        );

        // The draft is the published config itself: the figure is the cost of reading and
        // re-deciding the requests, which does not depend on what the draft changes.
        let mut times = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let input = arbiter::tenant::simulate::SimulateInput {
                id: "cross-sell".into(),
                limit: Some(arbiter::tenant::simulate::MAX_REQUESTS),
                since: None,
            };
            let sim = t.simulate(input).await.unwrap();
            times.push(started.elapsed());
            println!("simulate: {} logged requests in {:.2} s", sim.requests, started.elapsed().as_secs_f64());
        }
        println!("simulate the last 100,000 requests: median {:.2} s", median(times).as_secs_f64());

        let started = Instant::now();
        registry.checkpoint();
        println!("checkpoint fold of the closed segments: {:.2} s", started.elapsed().as_secs_f64());
        registry.shutdown();
    });
    drop(runtime);
    let restart = |label: &str| {
        let (before, _) = memory_mb();
        let started = Instant::now();
        let store = Arc::new(SledStore::open(&dir).unwrap());
        let registry = Registry::start(store.clone()).unwrap();
        let took = started.elapsed();
        let (after, _) = memory_mb();
        let (treated, control, _) = registry
            .tenant("default")
            .unwrap()
            .learning
            .experiments
            .totals("cross-sell", arbiter::tenant::interaction::DEFAULT_CONVERSIONS);
        println!(
            "restart {label}: {:.2} s, RSS +{:.0} MB ({} treated / {} control customers restored)",
            took.as_secs_f64(),
            after - before,
            treated.samples,
            control.samples
        );
        registry.shutdown();
        drop(store);
    };
    restart("from the checkpoint");
    std::fs::remove_file(dir.join("events").join("checkpoint")).unwrap();
    restart("replaying the whole log (checkpoint removed)");
    restart("again, from the checkpoint that start wrote");
    std::fs::remove_dir_all(&dir).ok();
}
