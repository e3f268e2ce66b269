//! `plugins/cross_sell.rules` decides exactly as the tutorial's JSON rules: same offers,
//! ranks, scores and funnel counts for every customer in a grid over every boundary
//! (each boolean true/false/missing, each tier, tenure 5/6/23/24, balance 49,999/50,000,
//! missing fields).

use arbiter::catalog::LoadMode;
use arbiter::demo::{self, Eligibility};
use arbiter::engine::{Decision, NoSignals, RecommendRequest};
use serde_json::{json, Map, Value};

fn grid() -> Vec<Value> {
    let flags = ["hasChecking", "hasSavings", "hasCreditCard", "hasMortgage", "hasBrokerage"];
    let bools = [Some(true), Some(false), None];
    let tiers = [Some("premium"), Some("private"), Some("basic"), None];
    let tenures = [Some(5), Some(6), Some(23), Some(24), None];
    let balances = [Some(49_999.0), Some(50_000.0), None];
    let mut rows = Vec::new();
    for mask in 0..3usize.pow(5) {
        for tier in tiers {
            for tenure in tenures {
                for balance in balances {
                    let mut row = Map::new();
                    row.insert("customer_id".into(), json!(format!("g{}", rows.len())));
                    let mut m = mask;
                    for flag in flags {
                        if let Some(b) = bools[m % 3] {
                            row.insert(flag.into(), json!(b));
                        }
                        m /= 3;
                    }
                    tier.map(|t| row.insert("tier".into(), json!(t)));
                    tenure.map(|t| row.insert("tenureMonths".into(), json!(t)));
                    balance.map(|b| row.insert("avgMonthlyBalance".into(), json!(b)));
                    rows.push(Value::Object(row));
                }
            }
        }
    }
    rows
}

/// What must match: offers by name, rank and score; the funnel; control; warnings.
type Summary = (Vec<(String, u32, f64)>, [usize; 4], bool, Vec<String>);

fn summary(d: &Decision) -> Summary {
    let offers =
        d.decisions.iter().chain(&d.counterfactual).map(|o| (o.offer_name.to_string(), o.rank, o.score)).collect();
    let m = &d.meta;
    (
        offers,
        [m.total_candidates, m.after_qualification, m.after_suppression, m.after_contact_policy],
        d.control_group,
        m.warnings.clone(),
    )
}

#[test]
fn rule_file_decides_like_the_json_rules() {
    let mut json_tenant = demo::tutorial_with(Eligibility::Json).unwrap();
    let mut rules_tenant = demo::tutorial_with(Eligibility::Rules(demo::CROSS_SELL_RULES)).unwrap();
    assert!(rules_tenant.catalog.rules.is_empty(), "the rules tenant must have no JSON rules");
    let rows = grid();
    for t in [&mut json_tenant, &mut rules_tenant] {
        t.catalog.load_rows(&t.schema_id, &rows, LoadMode::Upsert).unwrap();
    }
    let mut differences = Vec::new();
    let mut outcomes = std::collections::BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let req = RecommendRequest { customer_id: format!("g{i}"), ..demo::request() };
        let a = summary(&json_tenant.flow.decide(&req, &NoSignals, false));
        let b = summary(&rules_tenant.flow.decide(&req, &NoSignals, false));
        outcomes.insert(a.0.iter().map(|o| o.0.clone()).collect::<Vec<_>>());
        if a != b {
            differences.push(format!("{row}: json {a:?} vs rules {b:?}"));
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} customers differ, e.g.\n{}",
        differences.len(),
        rows.len(),
        differences[..differences.len().min(5)].join("\n")
    );
    // The grid reaches every combination of surviving offers, so the comparison is not vacuous.
    assert_eq!(outcomes.len(), 16, "{outcomes:?}");
}

#[test]
fn explain_points_at_the_rule_file() {
    let t = demo::tutorial_with(Eligibility::Rules(demo::CROSS_SELL_RULES)).unwrap();
    let d = t.flow.decide(&demo::request(), &NoSignals, true);
    let removed = &d.explanation.unwrap().removed;
    let wealth = removed.iter().find(|r| &*r.offer_name == "Wealth-management account").unwrap();
    let rule = wealth.rule.as_ref().unwrap();
    assert_eq!(&*rule.name, "Wealth — premium tier, 50k, no brokerage");
    assert!(rule.location.as_deref().unwrap().starts_with("cross_sell.rules:"), "{rule:?}");
    assert!(rule.source.as_deref().unwrap().contains("customer.avgMonthlyBalance >= 50_000"), "{rule:?}");
}
