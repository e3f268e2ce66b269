//! Node features beyond the tutorial: channel overrides, filters, soft rules, scopes.

use arbiter::catalog::{Catalog, LoadMode};
use arbiter::engine::{Decision, NoSignals, RecommendRequest};
use serde_json::{json, Value};

struct Tenant {
    catalog: Catalog,
    offers: Vec<String>,
}

/// Three offers (a: priority 90 / value 10, b: 50 / 90, c: 70 / 70, mandatory),
/// categories x, x, y; a schema with `age` and `segment`; channels email and in_app.
fn tenant() -> Tenant {
    let mut catalog = Catalog::new();
    let schema = json!({"name": "customer", "fields": [
        {"name": "customer_id", "isUnique": true}, {"name": "age", "dataType": "integer"},
        {"name": "segment", "dataType": "varchar"}]});
    let sid = catalog.add_schema(serde_json::from_value(schema).unwrap()).unwrap().meta.id.clone();
    let rows = [json!({"customer_id": "u1", "age": 30, "segment": "young"})];
    catalog.load_rows(&sid, &rows, LoadMode::Upsert).unwrap();
    let mut offers = Vec::new();
    for (name, priority, value, category, mandatory) in
        [("a", 90, 10, "x", false), ("b", 50, 90, "x", false), ("c", 70, 70, "y", true)]
    {
        let body = json!({"name": name, "status": "active", "priority": priority, "businessValue": value,
            "category": category, "mandatory": mandatory});
        offers.push(catalog.add_offer(serde_json::from_value(body).unwrap()).unwrap().meta.id.clone());
    }
    for (name, kind) in [("email", "email"), ("in_app", "in_app")] {
        let body = json!({"name": name, "channelType": kind, "status": "active"});
        catalog.add_channel(serde_json::from_value(body).unwrap()).unwrap();
    }
    Tenant { catalog, offers }
}

fn flow(t: &mut Tenant, key: &str, extra_nodes: Value, score: Value) -> std::sync::Arc<arbiter::engine::CompiledFlow> {
    let sid = t.catalog.schemas[0].meta.id.clone();
    let mut nodes = vec![
        json!({"id": "inv", "type": "inventory"}),
        json!({"id": "enr", "type": "enrich", "config": {"sources": [{"schemaId": sid}]}}),
    ];
    nodes.extend(extra_nodes.as_array().unwrap().iter().cloned());
    nodes.push(json!({"id": "score", "type": "score", "config": score}));
    nodes.push(json!({"id": "rank", "type": "rank", "config": {"maxCandidates": 10}}));
    let body = json!({"key": key, "name": key, "draftConfig": {"version": 2, "nodes": nodes}});
    let id = t.catalog.add_flow(serde_json::from_value(body).unwrap()).unwrap().meta.id.clone();
    t.catalog.publish(&id, None).unwrap()
}

fn rule(t: &mut Tenant, name: &str, scope: &str, scope_id: Option<&str>, stage: &str, config: Value) {
    let body = json!({"name": name, "ruleType": "attribute_condition", "scope": scope, "scopeId": scope_id,
        "stage": stage, "config": config});
    t.catalog.add_rule(serde_json::from_value(body).unwrap()).unwrap();
}

fn run(f: &arbiter::engine::CompiledFlow, channel: Option<&str>) -> Decision {
    let req = RecommendRequest { customer_id: "u1".into(), channel: channel.map(Into::into), ..Default::default() };
    f.decide(&req, &NoSignals, true)
}

fn names(d: &Decision) -> Vec<&str> {
    d.decisions.iter().map(|o| &*o.offer_name).collect()
}

#[test]
fn channel_override_changes_the_ranking() {
    let mut t = tenant();
    // Base: emphasis only → a (90) > c (70) > b (50). Email override: impact only → b > c > a.
    let score = json!({"method": "formula",
        "formula": {"propensityWeight": 0, "relevanceWeight": 0, "impactWeight": 0, "emphasisWeight": 1},
        "overrides": [{"scope": "channel", "value": "email",
            "formula": {"propensityWeight": 0, "relevanceWeight": 0, "impactWeight": 1, "emphasisWeight": 0}}]});
    let f = flow(&mut t, "ov", json!([]), score);
    assert_eq!(names(&run(&f, Some("in_app"))), ["a", "c", "b"]);
    assert_eq!(names(&run(&f, Some("email"))), ["b", "c", "a"]);
    assert_eq!(names(&run(&f, None)), ["a", "c", "b"]);
}

#[test]
fn override_can_switch_the_method() {
    let mut t = tenant();
    let score = json!({"method": "formula", "overrides": [{"scope": "channel", "value": "in_app", "method": "priority_weighted"}]});
    let f = flow(&mut t, "m", json!([]), score);
    let d = run(&f, Some("in_app"));
    assert_eq!(d.decisions[0].score, 0.9);
    assert_eq!(d.decisions[0].explanation.as_ref().unwrap().ranking_scores.method, "priority_weighted");
}

#[test]
fn filter_keeps_only_true_conditions() {
    let mut t = tenant();
    let filter = json!([{"id": "f", "type": "filter", "config": {"combinator": "OR", "conditions": [
        {"field": "offer.category", "operator": "eq", "value": "y"},
        {"field": "offer.priority", "operator": "gte", "value": 80}]}}]);
    let f = flow(&mut t, "f", filter, json!({"method": "priority_weighted"}));
    let d = run(&f, None);
    assert_eq!(names(&d), ["a", "c"]);
    let removed = &d.explanation.as_ref().unwrap().removed;
    assert_eq!((&*removed[0].offer_name, &*removed[0].node_id, removed[0].node_type), ("b", "f", "filter"));
    // A filter on a missing attribute removes (strict), unlike a qualification rule.
    let filter = json!([{"id": "f", "type": "filter", "config": {"conditions": [
        {"field": "attributes.vip", "operator": "eq", "value": true}]}}]);
    let f = flow(&mut t, "f2", filter, json!({"method": "priority_weighted"}));
    assert!(run(&f, None).decisions.is_empty());
}

#[test]
fn match_rules_scale_the_score_and_hard_rules_remove() {
    let mut t = tenant();
    let a = t.offers[0].clone();
    rule(
        &mut t,
        "a prefers old",
        "offer",
        Some(&a),
        "match",
        json!({"attribute": "customer.age", "operator": "gte", "value": 40, "multiplier": 0.25}),
    );
    rule(
        &mut t,
        "x needs young",
        "category",
        Some("x"),
        "eligibility",
        json!({"attribute": "customer.segment", "operator": "eq", "value": "young"}),
    );
    let f = flow(&mut t, "q", json!([{"id": "q", "type": "qualify"}]), json!({"method": "priority_weighted"}));
    let d = run(&f, None);
    // a: 0.9 × 0.25 = 0.225 < b 0.5 < c 0.7.
    assert_eq!(names(&d), ["c", "b", "a"]);
    assert!((d.decisions[2].score - 0.225).abs() < 1e-12);
    let penalties = &d.explanation.as_ref().unwrap().penalties;
    assert_eq!(penalties.len(), 1);
    assert_eq!(&*penalties[0].rule.as_ref().unwrap().name, "a prefers old");

    rule(
        &mut t,
        "x needs old segment",
        "category",
        Some("x"),
        "fit",
        json!({"attribute": "customer.segment", "operator": "eq", "value": "old"}),
    );
    let f = flow(&mut t, "q2", json!([{"id": "q", "type": "qualify"}]), json!({"method": "priority_weighted"}));
    // Category x (a, b) removed by the fit rule; c is mandatory and skips rules anyway.
    assert_eq!(names(&run(&f, None)), ["c"]);
}

#[test]
fn channel_scoped_rules_apply_only_on_their_channel() {
    let mut t = tenant();
    rule(
        &mut t,
        "no email for anyone",
        "channel",
        Some("email"),
        "eligibility",
        json!({"attribute": "customer.age", "operator": "lt", "value": 0}),
    );
    let f = flow(&mut t, "c", json!([{"id": "q", "type": "qualify"}]), json!({"method": "priority_weighted"}));
    assert_eq!(names(&run(&f, Some("email"))), ["c"]);
    assert_eq!(names(&run(&f, Some("in_app"))), ["a", "c", "b"]);
}

#[test]
fn qualify_can_skip_or_select_rules() {
    let mut t = tenant();
    rule(
        &mut t,
        "kill all",
        "global",
        None,
        "eligibility",
        json!({"attribute": "customer.age", "operator": "lt", "value": 0}),
    );
    let id = t.catalog.rules[0].meta.id.clone();
    rule(
        &mut t,
        "kill none",
        "global",
        None,
        "eligibility",
        json!({"attribute": "customer.age", "operator": "gt", "value": 0}),
    );
    let skip = flow(&mut t, "s", json!([{"id": "q", "type": "qualify", "config": {"mode": "skip"}}]), json!({}));
    assert_eq!(run(&skip, None).count, 3);
    let sel = flow(
        &mut t,
        "sel",
        json!([{"id": "q", "type": "qualify", "config": {"mode": "selected", "ruleIds": [id]}}]),
        json!({}),
    );
    assert_eq!(names(&run(&sel, None)), ["c"]);
}

#[test]
fn request_attributes_reach_rules() {
    let mut t = tenant();
    rule(
        &mut t,
        "cart over 100",
        "global",
        None,
        "eligibility",
        json!({"attribute": "attributes.cart", "operator": "gt", "value": 100}),
    );
    let f = flow(&mut t, "attr", json!([{"id": "q", "type": "qualify"}]), json!({}));
    let mut req = RecommendRequest { customer_id: "u1".into(), ..Default::default() };
    req.attributes.insert("cart".into(), json!(50));
    assert_eq!(f.decide(&req, &NoSignals, false).count, 1);
    req.attributes.insert("cart".into(), json!("150"));
    assert_eq!(f.decide(&req, &NoSignals, false).count, 3);
}

#[test]
fn inventory_scopes_statuses_and_whitelists() {
    let mut t = tenant();
    let paused = json!({"name": "d", "status": "paused", "priority": 100});
    t.catalog.add_offer(serde_json::from_value(paused).unwrap()).unwrap();
    let sid = t.catalog.schemas[0].meta.id.clone();
    let mk = |t: &mut Tenant, key: &str, inv: Value| {
        let nodes = json!([{"id": "inv", "type": "inventory", "config": inv},
            {"id": "enr", "type": "enrich", "config": {"sources": [{"schemaId": sid}]}}]);
        let body = json!({"key": key, "name": key, "draftConfig": {"version": 2, "nodes": nodes}});
        let id = t.catalog.add_flow(serde_json::from_value(body).unwrap()).unwrap().meta.id.clone();
        t.catalog.publish(&id, None).unwrap()
    };
    assert_eq!(mk(&mut t, "all", json!({})).offer_count(), 3);
    assert_eq!(mk(&mut t, "paused", json!({"includeStatuses": ["active", "paused"]})).offer_count(), 4);
    assert_eq!(mk(&mut t, "cat", json!({"scope": "category", "categoryIds": ["y"]})).offer_count(), 1);
    let a = t.offers[0].clone();
    assert_eq!(mk(&mut t, "ids", json!({"scope": "category", "categoryIds": ["y"], "offerIds": [a]})).offer_count(), 1);
}

/// A condition many offers share (it reads no offer field) is evaluated once per decision
/// and its value reused for each offer; a condition on an offer field is evaluated per
/// offer; and each decision has its own values.
#[test]
fn shared_conditions_give_every_offer_its_own_answer() {
    let mut t = tenant();
    let sid = t.catalog.schemas[0].meta.id.clone();
    let rows = [json!({"customer_id": "u2", "age": 70, "segment": "senior"})];
    t.catalog.load_rows(&sid, &rows, LoadMode::Upsert).unwrap();
    for (i, id) in t.offers.clone().iter().enumerate() {
        let young = json!({"attribute": "customer.segment", "operator": "eq", "value": "young"});
        rule(&mut t, &format!("young {i}"), "offer", Some(id), "eligibility", young);
        let priority = json!({"attribute": "offer.priority", "operator": "gte", "value": 60});
        rule(&mut t, &format!("priority {i}"), "offer", Some(id), "eligibility", priority);
    }
    let f = flow(&mut t, "shared", json!([{"id": "q", "type": "qualify"}]), json!({"method": "priority_weighted"}));
    assert_eq!(names(&run(&f, None)), ["a", "c"], "u1 is young: b fails its own priority condition");
    let req = RecommendRequest { customer_id: "u2".into(), ..Default::default() };
    let d = f.decide(&req, &NoSignals, true);
    assert_eq!(names(&d), ["c"], "u2 is not young: a and b fail (c is mandatory: qualification skips it)");
    assert_eq!(names(&run(&f, None)), ["a", "c"], "the next decision evaluates afresh");
}
