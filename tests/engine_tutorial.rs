//! The tutorial's cross-sell scenario, in-process, from the tutorial's own JSON bodies.

use arbiter::catalog::LoadMode;
use arbiter::demo;
use arbiter::engine::{Decision, NoSignals, RecommendRequest};
use serde_json::json;

fn decide(t: &demo::Tutorial, customer: &str) -> Decision {
    let req = RecommendRequest { customer_id: customer.into(), ..demo::request() };
    t.flow.decide(&req, &NoSignals, false)
}

fn names(d: &Decision) -> Vec<&str> {
    d.decisions.iter().map(|o| &*o.offer_name).collect()
}

#[test]
fn tutorial_customer_gets_card_then_savings() {
    let t = demo::tutorial().unwrap();
    let d = t.flow.decide(&demo::request(), &NoSignals, false);
    assert!(!d.control_group);
    assert_eq!(names(&d), ["Rewards credit card", "High-yield savings"]);
    assert_eq!(d.decisions.iter().map(|o| o.rank).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(d.count, 2);
    assert_eq!(d.meta.total_candidates, 4);
    assert_eq!(d.meta.after_qualification, 2);
    assert_eq!(d.meta.after_suppression, 2);
    assert_eq!(d.meta.after_contact_policy, 2);
    assert_eq!(d.decision_flow_version, 1);
    assert_eq!(&*d.decision_flow_key, "cross-sell");
    assert_eq!(d.recommendation_id, d.interaction_id);
}

#[test]
fn response_has_the_tutorial_shape() {
    let t = demo::tutorial().unwrap();
    let mut v = serde_json::to_value(t.flow.decide(&demo::request(), &NoSignals, false)).unwrap();
    // The engine leaves the ids to the tenant's event log (a record's position is its id):
    // a decision not logged (yet) has none.
    for key in ["interactionId", "recommendationId"] {
        assert!(v.get(key).is_none(), "{key}");
        v[key] = json!("<id>");
    }
    for d in v["decisions"].as_array_mut().unwrap() {
        d["offerId"] = json!("<id>");
        d["score"] = json!((d["score"].as_f64().unwrap() * 1e6).round() / 1e6);
    }
    assert_eq!(
        v,
        json!({
            "interactionId": "<id>", "recommendationId": "<id>", "customerId": "cust_42",
            "decisionFlowKey": "cross-sell", "decisionFlowVersion": 1, "channel": "in_app", "count": 2,
            "decisions": [
                {"offerId": "<id>", "offerName": "Rewards credit card", "score": 0.685454, "rank": 1, "priority": 80, "personalization": {}},
                {"offerId": "<id>", "offerName": "High-yield savings", "score": 0.530663, "rank": 2, "priority": 70, "personalization": {}}
            ],
            "meta": {"totalCandidates": 4, "afterQualification": 2, "afterSuppression": 2, "afterContactPolicy": 2, "degradedScoring": false}
        })
    );
}

#[test]
fn other_customers_get_what_their_holdings_allow() {
    let t = demo::tutorial().unwrap();
    // Private tier, 125k balance, no brokerage, no mortgage: wealth and mortgage, not card/savings.
    let d = decide(&t, "cust_7");
    // Wealth (impact 0.95, emphasis 0.95) outscores mortgage (0.90, 0.90).
    assert_eq!(names(&d), ["Wealth-management account", "Mortgage pre-approval"]);
    // New basic customer: no checking (no savings), 3 months (no card, no mortgage), basic tier.
    let d = decide(&t, "cust_3");
    assert!(d.decisions.is_empty());
    assert_eq!(d.meta.after_qualification, 0);
}

#[test]
fn missing_row_passes_rules_and_says_so() {
    let t = demo::tutorial().unwrap();
    let d = decide(&t, "cust_unknown_1");
    // No row: every attribute is missing, so every attribute_condition passes.
    assert_eq!(d.meta.after_qualification, 4);
    assert_eq!(d.meta.warnings, ["no `customer` row for customer `cust_unknown_1`"]);
}

#[test]
fn unknown_channel_is_reported() {
    let t = demo::tutorial().unwrap();
    let req = RecommendRequest { channel: Some("fax".into()), ..demo::request() };
    let d = t.flow.decide(&req, &NoSignals, false);
    assert_eq!(d.count, 2);
    assert!(d.meta.warnings[0].contains("unknown channel `fax`"), "{:?}", d.meta.warnings);
}

#[test]
fn holdout_is_deterministic_and_near_ten_percent() {
    let t = demo::tutorial().unwrap();
    let control: Vec<bool> = (0..5000).map(|i| t.flow.in_holdout(&format!("c{i}"))).collect();
    let share = control.iter().filter(|c| **c).count() as f64 / 5000.0;
    assert!((0.08..0.12).contains(&share), "holdout share {share}");
    let again: Vec<bool> = (0..5000).map(|i| t.flow.in_holdout(&format!("c{i}"))).collect();
    assert_eq!(control, again);
}

#[test]
fn control_customer_gets_nothing_but_would_have_received_is_kept() {
    let mut t = demo::tutorial().unwrap();
    let id = (0..1000).map(|i| format!("h{i}")).find(|c| t.flow.in_holdout(c)).unwrap();
    let row = json!({"customer_id": id, "tenureMonths": 36, "tier": "premium", "hasChecking": true,
        "hasSavings": false, "hasCreditCard": false, "hasMortgage": true, "hasBrokerage": false, "avgMonthlyBalance": 1});
    t.catalog.load_rows(&t.schema_id, &[row], LoadMode::Upsert).unwrap();
    let d = decide(&t, &id);
    assert!(d.control_group);
    assert_eq!(d.count, 0);
    assert!(d.decisions.is_empty());
    let would: Vec<&str> = d.counterfactual.iter().map(|o| &*o.offer_name).collect();
    assert_eq!(would, ["Rewards credit card", "High-yield savings"]);
    let v = serde_json::to_value(&d).unwrap();
    assert_eq!(v["controlGroup"], json!(true));
}

#[test]
fn explain_names_the_rule_that_removed_each_offer() {
    let t = demo::tutorial().unwrap();
    let d = t.flow.decide(&demo::request(), &NoSignals, true);
    let removed = &d.explanation.as_ref().unwrap().removed;
    let by_offer: Vec<(&str, &str)> =
        removed.iter().map(|r| (&*r.offer_name, &*r.rule.as_ref().unwrap().name)).collect();
    assert_eq!(
        by_offer,
        [("Wealth-management account", "Wealth — balance >= 50k"), ("Mortgage pre-approval", "Mortgage — none yet")]
    );
    let rule = removed[0].rule.as_ref().unwrap();
    assert_eq!(rule.attribute.as_deref(), Some("customer.avgMonthlyBalance"));
    assert_eq!(rule.operator, Some("gte"));
    assert_eq!(rule.expected, Some(json!(50000)));
    assert_eq!(rule.actual, Some(json!(32000)));
    let scores = &d.decisions[0].explanation.as_ref().unwrap().ranking_scores;
    assert_eq!((scores.impact, scores.emphasis, scores.propensity), (0.8, 0.8, 0.5));
    assert_eq!(scores.uplift_factor, 1.0);
    assert_eq!(scores.final_score, d.decisions[0].score);
}

#[test]
fn limit_and_max_candidates_cap_the_count() {
    let t = demo::tutorial().unwrap();
    let treated = (0..100).map(|i| format!("n{i}")).find(|c| !t.flow.in_holdout(c)).unwrap();
    let req = RecommendRequest { customer_id: treated, limit: Some(3), ..demo::request() };
    assert_eq!(t.flow.decide(&req, &NoSignals, false).count, 3);
    let req = RecommendRequest { limit: Some(50), ..req };
    assert_eq!(t.flow.decide(&req, &NoSignals, false).count, 4);
    let s = demo::synthetic(100, 0).unwrap();
    let req = RecommendRequest { limit: Some(50), ..demo::synthetic_request() };
    // maxCandidates 5 in the rank node wins over the request's 50.
    assert_eq!(s.flow.decide(&req, &NoSignals, false).count, 5);
}

#[test]
fn ties_break_by_priority_then_offer_id() {
    let mut catalog = arbiter::catalog::Catalog::new();
    let mut ids = Vec::new();
    for (name, priority, weight) in [("a", 50, 100), ("b", 100, 50), ("c", 50, 100)] {
        let body = json!({"name": name, "status": "active", "priority": priority, "weight": weight});
        ids.push(catalog.add_offer(serde_json::from_value(body).unwrap()).unwrap().meta.id.clone());
    }
    let flow = json!({"key": "k", "name": "k", "draftConfig": {"version": 2, "nodes": [
        {"id": "inv", "type": "inventory"}, {"id": "s", "type": "score", "config": {"method": "priority_weighted"}}]}});
    let flow_id = catalog.add_flow(serde_json::from_value(flow).unwrap()).unwrap().meta.id.clone();
    let compiled = catalog.publish(&flow_id, None).unwrap();
    let d = compiled.decide(&RecommendRequest { customer_id: "x".into(), ..Default::default() }, &NoSignals, false);
    // All three score 0.5: b has the higher priority; a and c tie and go by id.
    let mut rest = [ids[0].clone(), ids[2].clone()];
    rest.sort();
    let got: Vec<&str> = d.decisions.iter().map(|o| &*o.offer_id).collect();
    assert_eq!(got, [ids[1].as_str(), rest[0].as_str(), rest[1].as_str()]);
}
