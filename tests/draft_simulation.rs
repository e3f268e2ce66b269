//! A draft simulated on logged traffic, in-process: the live flow explores (Thompson) and
//! logs each shown offer's probability; customers convert with known probabilities; the
//! draft ranks without exploring. Its off-policy estimates must cover its true conversion
//! rate, and the simulation must change nothing.

use std::sync::Arc;

use arbiter::catalog::{FlowCandidate, LoadMode};
use arbiter::demo;
use arbiter::engine::RecommendRequest;
use arbiter::learn::logistic::sigmoid;
use arbiter::learn::rng::SplitMix64;
use arbiter::model::DecisionFlow;
use arbiter::store::SledStore;
use arbiter::tenant::command::{json_rows, CompileCandidate, LoadRows, Patch};
use arbiter::tenant::interaction::RespondInput;
use arbiter::tenant::simulate::{Interval, SimulateInput};
use arbiter::tenant::{RecommendOptions, Registry, TenantHandle};
use serde_json::{json, Value};

/// Requests per seed (one tenant each).
const REQUESTS: usize = 1_500;

/// Seeds, and the share of them each interval must cover. Coverage is a rate: with a true
/// 95 %, 20 seeds fall below 18 covered about 7 % of the time, so the default run only
/// guards against a broken estimator (≥ 80 %: below 16 about 0.3 % of the time), and the
/// target (≥ 90 %) is checked over `DRAFT_SIM_SEEDS` seeds (200 for BENCHMARKS.md).
fn seeds() -> (u64, f64) {
    match std::env::var("DRAFT_SIM_SEEDS").ok().and_then(|s| s.parse().ok()) {
        Some(n) => (n, 0.9),
        None => (20, 0.8),
    }
}

struct Customer {
    id: String,
    tenure: f64,
    premium: bool,
}

/// The true conversion probability of an offer shown to a customer.
fn truth(offer: &str, c: &Customer) -> f64 {
    match offer {
        "Rewards credit card" => sigmoid(-1.6 + 0.03 * (c.tenure - 60.0)),
        "High-yield savings" => 0.18,
        "Wealth-management account" => {
            if c.premium {
                0.25
            } else {
                0.02
            }
        }
        "Mortgage pre-approval" => 0.05,
        other => panic!("no truth for {other}"),
    }
}

fn row(c: &Customer) -> Value {
    json!({"customer_id": c.id, "tenureMonths": c.tenure, "tier": if c.premium { "premium" } else { "standard" },
           "hasChecking": true, "hasSavings": false, "hasCreditCard": false, "hasMortgage": true,
           "hasBrokerage": false, "avgMonthlyBalance": 60_000})
}

fn request(customer: &str) -> RecommendRequest {
    RecommendRequest { customer_id: customer.into(), limit: Some(1), ..demo::request() }
}

/// One seed: serve, respond, simulate. Returns (true draft rate, estimates).
async fn one_seed(t: &Arc<TenantHandle>, seed: u64) -> (f64, [Interval; 3], usize) {
    let explore = demo::FLOW.replace(r#""method": "formula","#, r#""method": "formula", "exploration": "thompson","#);
    let sent = demo::send_tutorial(t, Some(Vec::new()), &explore).await.unwrap();
    let mut rng = SplitMix64::new(seed);
    let customers: Vec<Customer> = (0..REQUESTS)
        .map(|i| Customer {
            id: format!("c{seed}_{i}"),
            tenure: (6.0 + rng.uniform() * 114.0).round(),
            premium: rng.bernoulli(0.4),
        })
        .collect();
    let rows = json_rows(&customers.iter().map(row).collect::<Vec<_>>());
    t.ask(LoadRows { schema_id: sent.schema_id.clone(), rows, mode: LoadMode::InsertOrIgnore }).await.unwrap();

    let mut outcomes = Vec::new();
    let mut treated = Vec::new();
    for c in &customers {
        let d = t.recommend(&request(&c.id), RecommendOptions::default()).unwrap();
        if d.control_group {
            continue;
        }
        treated.push(c);
        for o in &d.decisions {
            let converted = rng.uniform() < truth(&o.offer_name, c);
            outcomes.push(RespondInput::for_offer(&d, o, if converted { "convert" } else { "dismiss" }));
        }
    }
    for chunk in outcomes.chunks(500) {
        assert!(t.respond_all(chunk.to_vec()).await.iter().all(|r| r.is_ok()));
    }

    // The draft: the same flow, ranking by the posterior mean instead of a draw.
    let live = t.flow("cross-sell").unwrap();
    let mut body: Value = serde_json::from_str(&demo::FLOW.replace("$SCHEMA_ID", &sent.schema_id)).unwrap();
    let Value::Object(changes) = body.take() else { panic!("a flow is an object") };
    t.ask(Patch::<DecisionFlow>::new(&*live.flow_id, changes, None)).await.unwrap();
    let draft = t.ask(CompileCandidate { flow: "cross-sell".into(), which: FlowCandidate::Draft }).await.unwrap();
    let contacts_before = t.learning.contacts_of(&customers[0].id);

    let input = SimulateInput { id: "cross-sell".into(), limit: Some(REQUESTS), since: None };
    let sim = t.simulate(input).await.unwrap();
    assert_eq!(sim.requests, treated.len(), "every treated request is simulated once");
    assert_eq!(t.learning.contacts_of(&customers[0].id), contacts_before, "a simulation records no contact");
    assert_eq!(t.flow("cross-sell").unwrap().version, live.version, "nothing is published");

    // The truth: what the draft's picks convert at, on these very requests.
    let truth_rate = treated
        .iter()
        .map(|c| {
            let d = t.dry_run(&draft, &request(&c.id), false).unwrap();
            d.decisions.iter().map(|o| truth(&o.offer_name, c)).sum::<f64>()
        })
        .sum::<f64>()
        / treated.len() as f64;
    let e = sim.estimate.unwrap_or_else(|| panic!("explored decisions give an estimate: {}", sim.estimate_note));
    assert_eq!(e.requests, treated.len());
    let c = e.conversions;
    (truth_rate, [c.ips, c.snips.expect("the draft shows logged offers"), c.doubly_robust], sim.changed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drafts_estimated_conversion_rate_covers_the_truth() {
    let store = Arc::new(SledStore::temporary().unwrap());
    let registry = Registry::start(store).unwrap();
    let (seeds, share) = seeds();
    let mut covered = [0usize; 3];
    for seed in 0..seeds {
        let t = registry.ensure_tenant(&format!("sim{seed}")).await.unwrap();
        let (truth, intervals, changed) = one_seed(&t, seed).await;
        assert!(changed > 0, "exploration and ranking differ on some requests");
        for (k, i) in intervals.iter().enumerate() {
            covered[k] += usize::from(i.low <= truth && truth <= i.high);
        }
        eprintln!(
            "seed {seed}: truth {truth:.4}; IPS {:.4} [{:.4}, {:.4}], SNIPS {:.4} [{:.4}, {:.4}], DR {:.4} [{:.4}, {:.4}]; {changed} changed",
            intervals[0].value, intervals[0].low, intervals[0].high,
            intervals[1].value, intervals[1].low, intervals[1].high,
            intervals[2].value, intervals[2].low, intervals[2].high,
        );
    }
    eprintln!("covered in {seeds} seeds: IPS {}, SNIPS {}, DR {}", covered[0], covered[1], covered[2]);
    for (name, n) in ["IPS", "SNIPS", "DR"].iter().zip(covered) {
        assert!(n as f64 >= share * seeds as f64, "{name}'s 95 % interval covered the truth in {n} of {seeds} seeds");
    }
    registry.shutdown();
}
