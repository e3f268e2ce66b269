//! A simulated population with known truth, driven through the real engine, decision
//! log, respond path (tenant actor, durable writes), trainer and experiment report.
//!
//! Customers differ in tenure and balance. Only the savings and card offers are open to
//! them. The card persuades: its conversion rises with tenure when shown and is low
//! otherwise (τ from about 0.07 to 0.38). Savings is a near-sure thing: customers take it
//! about as often without the offer (τ ≈ 0.01). Both are logistic in the features, so
//! the learners are well specified and their τ estimates should converge to the truth.

use std::sync::Arc;

use arbiter::catalog::LoadMode;
use arbiter::demo;
use arbiter::engine::{Decision, RecommendRequest};
use arbiter::learn::logistic::sigmoid;
use arbiter::learn::rng::SplitMix64;
use arbiter::learn::uplift::Learner;
use arbiter::store::SledStore;
use arbiter::tenant::command::{LoadRows, Patch, Publish};
use arbiter::tenant::interaction::RespondInput;
use arbiter::tenant::RecommendOptions;
use arbiter::tenant::{measure, Registry, TenantHandle};
use serde_json::{json, Value};

const SAVINGS: &str = "High-yield savings";
const CARD: &str = "Rewards credit card";

/// True conversion probability: (treated, control).
fn truth(offer: &str, tenure: f64, balance: f64) -> (f64, f64) {
    match offer {
        CARD => (sigmoid(-1.0 + 0.02 * (tenure - 60.0)), sigmoid(-3.0 + 0.01 * (tenure - 60.0))),
        _ => {
            let base = 0.75 + 0.00001 * (balance - 50_000.0);
            (sigmoid(base + 0.05), sigmoid(base))
        }
    }
}

struct Customer {
    id: String,
    tenure: f64,
    balance: f64,
}

fn population(n: usize, offset: usize, rng: &mut SplitMix64) -> Vec<Customer> {
    (0..n)
        .map(|i| Customer {
            id: format!("sim_{}", offset + i),
            tenure: (6.0 + rng.uniform() * 114.0).round(),
            balance: (1_000.0 + rng.uniform() * 99_000.0).round(),
        })
        .collect()
}

fn row(c: &Customer) -> Value {
    json!({"customer_id": c.id, "tenureMonths": c.tenure, "tier": "standard", "hasChecking": true,
           "hasSavings": false, "hasCreditCard": false, "hasMortgage": true, "hasBrokerage": false,
           "avgMonthlyBalance": c.balance})
}

/// A fresh folder, removed when the guard drops (also when the test panics).
fn temp_dir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("arbiter-sim-").tempdir().unwrap()
}

struct Sim {
    t: Arc<TenantHandle>,
    schema: String,
    flow: String,
    rng: SplitMix64,
    served: usize,
}

impl Sim {
    async fn new(registry: &Registry) -> Sim {
        let t = registry.ensure_tenant("sim").await.unwrap();
        let sent = demo::send_tutorial(&t, Some(Vec::new()), demo::FLOW).await.unwrap();
        let (schema, flow) = (sent.schema_id, sent.flow_id);
        Sim { t, schema, flow, rng: SplitMix64::new(7), served: 0 }
    }

    async fn load(&self, customers: &[Customer]) {
        let rows = arbiter::tenant::command::json_rows(&customers.iter().map(row).collect::<Vec<_>>());
        let cmd = LoadRows { schema_id: self.schema.clone(), rows, mode: LoadMode::InsertOrIgnore };
        self.t.ask(cmd).await.unwrap();
    }

    /// Decides, records contacts and logs: the server's own path.
    fn decide(&self, customer: &str) -> Decision {
        let req = RecommendRequest { customer_id: customer.into(), ..demo::request() };
        self.t.recommend(&req, RecommendOptions::default()).unwrap()
    }

    /// `n` new customers each get one decision and respond as the truth says: shown
    /// offers convert or are dismissed; held-out customers convert on their own (the
    /// app reports it against the offer they would have been shown) or say nothing.
    async fn serve(&mut self, n: usize) {
        let customers = population(n, self.served, &mut self.rng);
        self.served += n;
        self.load(&customers).await;
        let mut outcomes = Vec::new();
        for c in &customers {
            let d = self.decide(&c.id);
            let offers = if d.control_group { &d.counterfactual } else { &d.decisions };
            for o in offers {
                let (p_t, p_c) = truth(&o.offer_name, c.tenure, c.balance);
                let converted = self.rng.uniform() < if d.control_group { p_c } else { p_t };
                let outcome = match (converted, d.control_group) {
                    (true, _) => "convert",
                    (false, false) => "dismiss",
                    (false, true) => continue,
                };
                outcomes.push(RespondInput {
                    conversion_value: converted.then_some(if &*o.offer_name == CARD { 90.0 } else { 40.0 }),
                    ..RespondInput::for_offer(&d, o, outcome)
                });
            }
        }
        // Concurrent responds share group commits, as concurrent clients would.
        for chunk in outcomes.chunks(256) {
            let mut set = tokio::task::JoinSet::new();
            for input in chunk.iter().cloned() {
                let t = self.t.clone();
                set.spawn(async move { t.respond(input).await });
            }
            while let Some(done) = set.join_next().await {
                done.unwrap().expect("respond is recorded");
            }
        }
    }

    fn train(&self) -> Arc<arbiter::tenant::learning::FlowUplift> {
        let flow = self.t.flow("cross-sell").unwrap();
        self.t.train_uplift(&flow).unwrap()
    }

    /// RMSE of τ against the truth over a fixed panel, per offer and learner.
    fn rmse(&self, panel: &[Customer], learner: Learner) -> [(f64, &'static str); 2] {
        let flow = self.t.flow("cross-sell").unwrap();
        let models = self.t.learning.uplift_for(&flow).expect("trained");
        let offer_id = |name: &str| flow.offer_ids().find(|(_, n)| &***n == name).unwrap().0.clone();
        [CARD, SAVINGS].map(|name| {
            let model = models.offers.get(&offer_id(name)).expect("model for the offer").model(learner);
            let se: f64 = panel
                .iter()
                .map(|c| {
                    let x = models.input(&flow, &c.id);
                    let (t, ctl) = truth(name, c.tenure, c.balance);
                    (model.predict(&x).tau - (t - ctl)).powi(2)
                })
                .sum();
            ((se / panel.len() as f64).sqrt(), if name == CARD { "card" } else { "savings" })
        })
    }

    fn order(&self, customer: &str) -> Vec<String> {
        // A decision for a treated look-alike: holdout customers get nothing to order.
        let d = self.decide(customer);
        let shown = if d.control_group { d.counterfactual } else { d.decisions };
        shown.iter().map(|o| o.offer_name.to_string()).collect()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uplift_converges_reorders_the_tutorial_and_the_z_test_sees_the_effect() {
    let tmp = temp_dir();
    let dir = tmp.path().to_path_buf();
    let registry = Registry::start(Arc::new(SledStore::open(&dir.join("data")).unwrap())).unwrap();
    let mut sim = Sim::new(&registry).await;
    let panel = population(300, 1_000_000, &mut SplitMix64::new(99));
    sim.load(&panel).await;
    let persuadable = Customer { id: "long_tenure".into(), tenure: 110.0, balance: 30_000.0 };
    sim.load(std::slice::from_ref(&persuadable)).await;

    // Learn propensities without uplift: savings converts more often when shown, so it
    // leads; no τ yet, so the U factor is 1.
    sim.serve(1_000).await;
    assert_eq!(sim.order(&persuadable.id), [SAVINGS, CARD], "without uplift the sure thing leads");

    // Little data, then more: τ error falls.
    sim.serve(1_000).await;
    sim.train();
    let small = [sim.rmse(&panel, Learner::TLearner), sim.rmse(&panel, Learner::XLearner)];
    sim.serve(8_000).await;
    let trained = sim.train();
    let large = [sim.rmse(&panel, Learner::TLearner), sim.rmse(&panel, Learner::XLearner)];
    eprintln!(
        "τ RMSE vs truth ({} interactions → {}): T-learner {:?} → {:?}; X-learner {:?} → {:?}",
        2_000, trained.interactions, small[0], large[0], small[1], large[1]
    );
    // Savings' true effect is about +0.01: where its early estimate leans negative, the
    // uplift segments suppress it (shown only as often as exploration draws a positive
    // effect), and it gets fewer new rows; the card, a persuadable, keeps getting them.
    // The card's error must fall for the T-learner, which decisions use unless another
    // learner is clearly better. (The X-learner's error on 2,000 rows happens to be
    // 0.029 already, about its floor here: over 10,000 rows it ends between 0.015 and
    // 0.031 depending on the run's exploration draws, so "falls" is not a property of it.)
    for (learner, (s, l)) in small.iter().zip(&large).enumerate() {
        for ((rs, name), (rl, _)) in s.iter().zip(l) {
            if *name == "card" && learner == 0 {
                assert!(rl < rs, "{name}: the T-learner's RMSE did not fall ({rs} → {rl})");
            }
            // Over 40 runs savings ended at 0.032–0.047 and the card at 0.004–0.030 (the
            // offers' ids, new every run, seed the draws). Before decisions centred their
            // uplift draw below τ, savings reached 0.065 and 0.075 now and then.
            assert!(*rl < 0.06, "{name}: RMSE {rl} with 10,000 customers");
        }
    }

    // The tutorial's story: with τ known, the near-sure-thing savings offer drops below
    // the card for a persuadable customer (sunk as a sure thing, or, where its estimate
    // leans negative, left out as a probable sleeping dog)...
    let order = sim.order(&persuadable.id);
    assert!(order == [CARD, SAVINGS] || order == [CARD], "uplift promotes the persuadable offer: {order:?}");
    let uplift = measure::customer_uplift(
        &sim.t.flow("cross-sell").unwrap(),
        Some(&trained),
        &persuadable.id,
        Some(Learner::XLearner),
    );
    let segment = |name: &str| {
        uplift["offers"].as_array().unwrap().iter().find(|o| o["offerName"] == name).unwrap()["segment"].clone()
    };
    let offer =
        |name: &str| uplift["offers"].as_array().unwrap().iter().find(|o| o["offerName"] == name).unwrap().clone();
    eprintln!("uplift for a long-tenure customer: {uplift}");
    assert_eq!(segment(CARD), "persuadable", "{uplift}");
    let (card, savings) = (offer(CARD), offer(SAVINGS));
    assert!(card["tau"].as_f64().unwrap() > 0.25, "{card}");
    assert!(savings["tau"].as_f64().unwrap().abs() < 0.06 && savings["muC"].as_f64().unwrap() > 0.5, "{savings}");
    // ...and only because of the uplift weight: the same flow with upliftWeight 0 keeps
    // the old order.
    let mut no_uplift: Value = serde_json::from_str(&demo::FLOW.replace("$SCHEMA_ID", &sim.schema)).unwrap();
    no_uplift["draftConfig"]["nodes"].as_array_mut().unwrap().iter_mut().find(|n| n["type"] == "score").unwrap()
        ["config"]["formula"]["upliftWeight"] = json!(0);
    let Value::Object(changes) = no_uplift else { panic!("a flow is an object") };
    sim.t.ask(Patch::<arbiter::model::DecisionFlow>::new(&sim.flow, changes, None)).await.unwrap();
    sim.t.ask(Publish { id: sim.flow.clone(), notes: None }).await.unwrap();
    assert_eq!(sim.order(&persuadable.id), [SAVINGS, CARD]);

    // The holdout report: treated customers convert more, and the z-test says so.
    let flow = sim.t.flow("cross-sell").unwrap();
    // Reported from the aggregates kept as decisions and outcomes happened; they equal
    // what a scan of the whole log gives.
    let conversions = arbiter::tenant::interaction::conversion_mask(&flow);
    let kept = sim.t.learning.experiments.totals("cross-sell", conversions);
    let scanned = sim.t.flow_log("cross-sell").unwrap().arm_totals(conversions);
    assert_eq!(kept.2, scanned.2, "customers in both arms");
    for (k, s) in [(kept.0, scanned.0), (kept.1, scanned.1)] {
        assert_eq!((k.samples, k.conversions), (s.samples, s.conversions));
        assert!((k.revenue_sum - s.revenue_sum).abs() <= 1e-9 * s.revenue_sum.abs().max(1.0), "{k:?} {s:?}");
        assert!((k.revenue_sq_sum - s.revenue_sq_sum).abs() <= 1e-9 * s.revenue_sq_sum.abs().max(1.0));
    }
    let results = measure::experiment_results(&flow, kept);
    eprintln!("experiment results: {results}");
    assert_eq!(results["insufficientData"], false);
    assert_eq!(results["significant"], true, "{results}");
    assert!(results["pValue"].as_f64().unwrap() < 1e-6, "{results}");
    let control = results["control"]["samples"].as_u64().unwrap();
    assert!((700..1_300).contains(&control), "about 10% held out of 10,000: {control}");
    assert!(results["uplift"].as_f64().unwrap() > 0.04, "{results}");
    assert!(results["revenue"]["incrementalTotal"].as_f64().unwrap() > 0.0, "{results}");
    registry.shutdown();
}
