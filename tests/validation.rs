//! Validation errors name the JSON path (or the rule) and say what is wrong.

use arbiter::catalog::{Catalog, CatalogError, LoadMode};
use arbiter::demo;
use arbiter::model::parse_json;
use serde_json::json;

fn err_text(e: CatalogError) -> String {
    e.to_string()
}

fn tutorial_catalog() -> demo::Tutorial {
    demo::tutorial().unwrap()
}

fn rule(attribute: &str, operator: &str, value: serde_json::Value) -> arbiter::model::RuleSpec {
    serde_json::from_value(json!({"name": format!("r {attribute} {operator}"), "ruleType": "attribute_condition",
        "config": {"attribute": attribute, "operator": operator, "value": value}}))
    .unwrap()
}

#[test]
fn unknown_attribute_suggests_the_field() {
    let mut t = tutorial_catalog();
    let e = err_text(t.catalog.add_rule(rule("customer.tenureMonth", "gte", json!(6))).unwrap_err());
    assert_eq!(e, "config.attribute: unknown attribute `customer.tenureMonth` (did you mean `customer.tenureMonths`?)");
}

#[test]
fn type_mismatch_names_the_value() {
    let mut t = tutorial_catalog();
    let e = err_text(t.catalog.add_rule(rule("customer.hasChecking", "gt", json!(true))).unwrap_err());
    assert_eq!(e, "config.value: `>` is not defined for boolean values");
    let e = err_text(t.catalog.add_rule(rule("customer.tenureMonths", "eq", json!("six"))).unwrap_err());
    assert_eq!(e, "config.value: cannot compare number with string using `==`");
    let e = err_text(t.catalog.add_rule(rule("customer.tier", "in", json!(["gold", 3]))).unwrap_err());
    assert_eq!(e, "config.value: list item is number, but the value tested is string");
}

#[test]
fn numeric_strings_are_accepted_for_numbers() {
    let mut t = tutorial_catalog();
    assert!(t.catalog.add_rule(rule("customer.tenureMonths", "gte", json!("6"))).is_ok());
}

#[test]
fn unknown_offer_scope_is_named() {
    let mut t = tutorial_catalog();
    let body = json!({"name": "x", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "nope",
        "config": {"attribute": "customer.tier", "operator": "exists"}});
    let e = err_text(t.catalog.add_rule(serde_json::from_value(body).unwrap()).unwrap_err());
    assert_eq!(e, "scopeId: no offer with id `nope`");
}

#[test]
fn enrich_references_are_checked_at_publish() {
    let mut t = tutorial_catalog();
    let flow = demo::FLOW
        .replace("$SCHEMA_ID", &t.schema_id)
        .replace("\"cross-sell\"", "\"other\"")
        .replace("\"tier\",", "\"teir\",");
    let id = t.catalog.add_flow(parse_json(flow.as_bytes()).unwrap()).unwrap().meta.id.clone();
    let e = err_text(t.catalog.publish(&id, None).unwrap_err());
    assert_eq!(e, "draftConfig.nodes[1].config.sources[0].fields[0]: schema `customer` has no field `teir` (did you mean `tier`?)");

    let flow = demo::FLOW.replace("$SCHEMA_ID", "missing").replace("\"cross-sell\"", "\"third\"");
    let id = t.catalog.add_flow(parse_json(flow.as_bytes()).unwrap()).unwrap().meta.id.clone();
    let e = err_text(t.catalog.publish(&id, None).unwrap_err());
    assert_eq!(e, "draftConfig.nodes[1].config.sources[0].schemaId: no schema with id `missing`");
}

#[test]
fn weights_not_summing_to_one_are_rejected_at_create() {
    let mut t = tutorial_catalog();
    let flow = demo::FLOW
        .replace("$SCHEMA_ID", &t.schema_id)
        .replace("\"cross-sell\"", "\"w\"")
        .replace("\"relevanceWeight\": 0.15", "\"relevanceWeight\": 0.1");
    let e = err_text(t.catalog.add_flow(parse_json(flow.as_bytes()).unwrap()).unwrap_err());
    assert_eq!(e, "draftConfig.nodes[4].config.formula: propensityWeight+relevanceWeight+impactWeight+emphasisWeight must be 1.0, got 0.95");
}

#[test]
fn duplicate_names_conflict() {
    let mut t = tutorial_catalog();
    let e = t.catalog.add_channel(parse_json(demo::channel_body("email").as_bytes()).unwrap()).unwrap_err();
    assert!(matches!(e, CatalogError::Conflict(_)));
    assert_eq!(e.to_string(), "a channel named `email` already exists");
}

#[test]
fn a_bad_row_loads_nothing() {
    let mut c = Catalog::new();
    let id = c.add_schema(parse_json(demo::SCHEMA.as_bytes()).unwrap()).unwrap().meta.id.clone();
    let rows = [json!({"customer_id": "a", "tenureMonths": 1}), json!({"customer_id": "b", "tenureMonths": 1.5})];
    let e = err_text(c.load_rows(&id, &rows, LoadMode::Upsert).unwrap_err());
    assert_eq!(e, "rows[1].tenureMonths: expected integer, got a fraction");
    assert!(c.schema(&id).unwrap().1.is_empty());
}

#[test]
fn insert_ignores_existing_keys_and_upsert_replaces() {
    let mut c = Catalog::new();
    let id = c.add_schema(parse_json(demo::SCHEMA.as_bytes()).unwrap()).unwrap().meta.id.clone();
    let row = |t: i64| json!({"customer_id": "a", "tenureMonths": t});
    assert_eq!(c.load_rows(&id, &[row(1)], LoadMode::InsertOrIgnore).unwrap(), 1);
    assert_eq!(c.load_rows(&id, &[row(2)], LoadMode::InsertOrIgnore).unwrap(), 0);
    assert_eq!(c.schema(&id).unwrap().1.get("a").unwrap()[1], arbiter::rules::Value::Num(1.0));
    assert_eq!(c.load_rows(&id, &[row(3)], LoadMode::Upsert).unwrap(), 1);
    assert_eq!(c.schema(&id).unwrap().1.get("a").unwrap()[1], arbiter::rules::Value::Num(3.0));
}

/// Review finding: a rule scoped by offer name stopped applying when the offer was
/// renamed. Names are resolved to ids when the rule is created.
#[test]
fn renaming_an_offer_keeps_its_rules() {
    let mut t = tutorial_catalog();
    t.catalog.rules.clear();
    let body = json!({"name": "no card", "ruleType": "attribute_condition", "scope": "offer",
        "scopeId": "Rewards credit card", "config": {"attribute": "customer.tenureMonths", "operator": "gt", "value": 1000}});
    let rule = t.catalog.add_rule(serde_json::from_value(body).unwrap()).unwrap();
    assert_eq!(rule.spec.scope_id.as_deref(), Some(t.offer_ids[1].as_str()));
    let mut spec = t.catalog.offers[1].spec.clone();
    spec.name = "Rewards credit card (2027)".into();
    t.catalog.update_offer(&t.offer_ids[1].clone(), spec).unwrap();
    let flow = t.catalog.publish(&t.flow_id.clone(), None).unwrap();
    let d = flow.decide(&demo::request(), &arbiter::engine::NoSignals, false);
    assert!(d.decisions.iter().all(|o| !o.offer_name.starts_with("Rewards")), "{:?}", d.decisions);
}
