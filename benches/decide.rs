//! Benchmarks by phase: predicate evaluation, whole decisions (tutorial, S = 100 offers
//! × 3 rules, L = 1,000 offers × 3 rules, 20-attribute customer), and compiling L.
//! Run: `cargo bench --bench decide`.

use std::hint::black_box;
use std::time::Duration;

use arbiter::demo;
use arbiter::engine::{self, NoSignals};
use arbiter::rules::json::{lower, Operator};
use arbiter::rules::{Checker, Compiler, Env, Layout, Literals, Namespace, Path, Type, Value};
use criterion::{criterion_group, criterion_main, Criterion};

fn predicate(c: &mut Criterion) {
    let mut layout = Layout::new();
    layout.declare(Path { ns: Namespace::Customer, name: "tenureMonths".into() }, Type::Num);
    layout.declare(Path { ns: Namespace::Customer, name: "tier".into() }, Type::Str);
    let mut compiler = Compiler::new();
    let mut compile = |op, value: serde_json::Value, attr: &str| {
        let expr = lower(attr, op, Some(&value)).unwrap();
        compiler.predicate(&Checker::new(&mut layout, Literals::Lenient).check_predicate(&expr).unwrap())
    };
    let gte = compile(Operator::Gte, serde_json::json!(6), "customer.tenureMonths");
    let tier_in = compile(Operator::In, serde_json::json!(["premium", "private"]), "customer.tier");
    let consts = compiler.into_consts();
    let mut slots = vec![Value::Null; layout.len()];
    slots[5] = Value::Num(36.0);
    slots[6] = Value::Str("private".into());
    let offer = demo::sample_offer();
    let env = Env { slots: &slots, offer: &offer, consts: &consts };
    c.bench_function("predicate/gte", |b| b.iter(|| gte(black_box(&env))));
    c.bench_function("predicate/in", |b| b.iter(|| tier_in(black_box(&env))));
}

fn decide(c: &mut Criterion) {
    let tutorial = demo::tutorial().unwrap();
    let req = demo::request();
    c.bench_function("decide/tutorial", |b| b.iter(|| tutorial.flow.decide(black_box(&req), &NoSignals, false)));
    for (name, offers) in [("decide/S_100x3", 100), ("decide/L_1000x3", 1000)] {
        let t = demo::synthetic(offers, 3).unwrap();
        let req = demo::synthetic_request();
        let d = t.flow.decide(&req, &NoSignals, false);
        assert_eq!(d.count, 5, "the synthetic customer should fill the top 5");
        c.bench_function(name, |b| b.iter(|| t.flow.decide(black_box(&req), &NoSignals, false)));
    }
}

fn compile(c: &mut Criterion) {
    let t = demo::synthetic(1000, 3).unwrap();
    let flow = &t.catalog.flows[0];
    c.bench_function("compile/L_1000x3", |b| {
        b.iter(|| {
            engine::compile(&t.catalog.inputs(), &flow.meta.id, &flow.spec.key, &flow.spec.draft_config, 1).unwrap()
        })
    });
}

/// The rule language against JSON rules: the same rules, one evaluator.
fn language(c: &mut Criterion) {
    let json = demo::tutorial().unwrap();
    let lang = demo::tutorial_with(demo::Eligibility::Rules(demo::CROSS_SELL_RULES)).unwrap();
    let req = demo::request();
    c.bench_function("tutorial_json_rules", |b| b.iter(|| json.flow.decide(black_box(&req), &NoSignals, false)));
    c.bench_function("tutorial_language_rules", |b| b.iter(|| lang.flow.decide(black_box(&req), &NoSignals, false)));

    let s = demo::synthetic(100, 3).unwrap();
    let text = demo::rules_as_language(&s.catalog);
    let mut as_lang = demo::synthetic(100, 3).unwrap();
    // Same offers and customer; the 300 rules come from the file instead of JSON.
    let offers: Vec<String> = as_lang.catalog.offers.iter().map(|o| o.meta.id.clone()).collect();
    let mut text_for_lang = text.clone();
    for (from, to) in s.catalog.offers.iter().map(|o| &o.meta.id).zip(&offers) {
        text_for_lang = text_for_lang.replace(from.as_str(), to);
    }
    as_lang.catalog.rules.clear();
    as_lang.catalog.put_plugin("synthetic.rules", &text_for_lang).unwrap();
    let flow = as_lang.catalog.publish(&as_lang.flow_id, None).unwrap();
    let req = demo::synthetic_request();
    assert_eq!(
        s.flow.decide(&req, &NoSignals, false).decisions.iter().map(|d| d.score).collect::<Vec<_>>(),
        flow.decide(&req, &NoSignals, false).decisions.iter().map(|d| d.score).collect::<Vec<_>>()
    );
    c.bench_function("S_json_rules", |b| b.iter(|| s.flow.decide(black_box(&req), &NoSignals, false)));
    c.bench_function("S_language_rules", |b| b.iter(|| flow.decide(black_box(&req), &NoSignals, false)));
}

/// Parse + check + compile of a generated 1,000-rule file.
fn language_compile(c: &mut Criterion) {
    let t = demo::synthetic(1000, 0).unwrap();
    let mut text = String::new();
    for (i, o) in t.catalog.offers.iter().enumerate() {
        text.push_str(&format!(
            "rule \"r{i}\" for offer \"{}\" stage eligibility priority {} {{\n    customer.f0 >= {} and customer.f3 in [\"gold\", \"platinum\"] or not customer.f2\n}}\n",
            o.spec.name,
            i % 7,
            i % 100
        ));
    }
    let ctx = t.catalog.dsl_context();
    c.bench_function("language_1000_rules_parse_check", |b| {
        b.iter(|| arbiter::dsl::check_source("gen.rules", black_box(&text), &ctx))
    });
    c.bench_function("language_1000_rules_parse_check_compile", |b| {
        b.iter_batched(
            || demo::synthetic(1000, 0).unwrap(),
            |mut t| {
                t.catalog.put_plugin("gen.rules", &text).unwrap();
                let flow = &t.catalog.flows[0];
                engine::compile(&t.catalog.inputs(), &flow.meta.id, &flow.spec.key, &flow.spec.draft_config, 2).unwrap()
            },
            criterion::BatchSize::LargeInput,
        )
    });
}

/// What learning adds to a decision: S and L with three contact policies checked against
/// a 10-contact history, then also with trained X-learner uplift models on every offer
/// (τ for each candidate from 15 features), against the plain decision in the same run.
fn learned(c: &mut Criterion) {
    use arbiter::tenant::learning::{FlowUplift, Learning, OfferUplift};
    for (name, offers) in [("S_100x3", 100), ("L_1000x3", 1000)] {
        let mut t = demo::synthetic(offers, 3).unwrap();
        let req = demo::synthetic_request();
        c.bench_function(&format!("learned/{name}/baseline"), |b| {
            b.iter(|| t.flow.decide(black_box(&req), &NoSignals, false))
        });
        for body in [
            r#"{"name": "budget", "ruleType": "customer_total_cap", "config": {"maxTotal": 1000, "periodType": "monthly"}}"#,
            r#"{"name": "cat-0 daily", "ruleType": "frequency_cap", "scope": "category", "scopeId": "cat-0", "config": {"maxPerDay": 100}}"#,
            r#"{"name": "email rest", "ruleType": "cooldown", "scope": "channel", "scopeId": "email", "config": {"cooldownHours": 24}}"#,
        ] {
            t.catalog.add_policy(arbiter::model::parse_json(body.as_bytes()).unwrap()).unwrap();
        }
        let flow = t.catalog.publish(&t.flow_id, None).unwrap();
        let learning = Learning::new(t.catalog.counters.clone());
        let now = arbiter::ids::unix_now();
        for day in 1..=2 {
            learning.record_contacts(&flow.decide(&req, &NoSignals, false), now - day * 86_400);
        }
        assert_eq!(learning.contacts_of("bench_customer").len(), 10);
        c.bench_function(&format!("learned/{name}/contact_policies"), |b| {
            b.iter(|| flow.decide(black_box(&req), &learning.signals(&flow), false))
        });
        // What a receipt costs: the decision with its reads recorded, and its log record
        // encoded, against the same decision and record without them.
        let record = |d: &engine::Decision| arbiter::tenant::interaction::decision_record("t", d, &req, 1);
        let with_receipt = || {
            let inputs = engine::tape::Inputs::record();
            let mut d = flow.decide_with(black_box(&req), &learning.signals(&flow), false, &inputs);
            d.recorded = inputs.into_recorded().map(Box::new);
            record(&d).len()
        };
        let plain = record(&flow.decide(&req, &learning.signals(&flow), false)).len();
        eprintln!("{name}: a decision's log record is {plain} bytes, {} with its receipt", with_receipt());
        c.bench_function(&format!("learned/{name}/logged"), |b| {
            b.iter(|| record(&flow.decide(black_box(&req), &learning.signals(&flow), false)).len())
        });
        c.bench_function(&format!("learned/{name}/logged_with_receipt"), |b| b.iter(with_receipt));
        learning.install_uplift(uplift_models(&flow));
        let d = flow.decide(&req, &learning.signals(&flow), true);
        assert!(d.decisions[0].explanation.as_ref().unwrap().ranking_scores.tau.is_some(), "τ is used");
        c.bench_function(&format!("learned/{name}/contact_policies_uplift"), |b| {
            b.iter(|| flow.decide(black_box(&req), &learning.signals(&flow), false))
        });

        /// One set of learners fitted on generated rows (and one chosen), shared by every offer.
        fn uplift_models(flow: &std::sync::Arc<engine::CompiledFlow>) -> FlowUplift {
            use arbiter::learn::uplift::{fit_selected, UpliftRow};
            let width = flow.feature_names.len();
            let mut rng = arbiter::learn::rng::SplitMix64::new(42);
            let mut next = move || rng.uniform();
            let rows: Vec<UpliftRow> = (0..2_000)
                .map(|i| {
                    let features: Vec<f64> = (0..width).map(|_| next()).collect();
                    let p = 0.2 + 0.3 * features[0] + if i % 5 == 0 { 0.0 } else { 0.1 };
                    UpliftRow { treated: i % 5 != 0, converted: next() < p, features }
                })
                .collect();
            let selected = fit_selected(&rows).unwrap();
            let offers = flow.offer_ids().map(|(id, _)| (id.clone(), OfferUplift::new(selected.clone()))).collect();
            FlowUplift::new(flow, flow.feature_names.to_vec(), offers, Vec::new(), rows.len())
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(50).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    targets = predicate, decide, learned, compile, language, language_compile
}
criterion_main!(benches);
