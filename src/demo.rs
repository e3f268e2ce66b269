//! The cross-sell tutorial (`../shared/reference/cross-sell-tutorial.txt`) built
//! in-process from the tutorial's own JSON bodies: `arbiter demo` prints its decision,
//! and tests and benchmarks start from it.

use std::sync::Arc;

use crate::catalog::{Catalog, CatalogError, LoadMode};
use crate::engine::{CompiledFlow, RecommendRequest};
use crate::model::parse_json;

pub const SCHEMA: &str = r#"{
    "name": "customer",
    "displayName": "Customer",
    "fields": [
      { "name": "customer_id",       "dataType": "varchar", "isUnique": true },
      { "name": "tenureMonths",      "dataType": "integer" },
      { "name": "tier",              "dataType": "varchar" },
      { "name": "hasChecking",       "dataType": "boolean" },
      { "name": "hasSavings",        "dataType": "boolean" },
      { "name": "hasCreditCard",     "dataType": "boolean" },
      { "name": "hasMortgage",       "dataType": "boolean" },
      { "name": "hasBrokerage",      "dataType": "boolean" },
      { "name": "avgMonthlyBalance", "dataType": "decimal" }
    ]
  }"#;

pub const OFFERS: [&str; 4] = [
    r#"{
  "name": "High-yield savings", "status": "active", "category": "cross-sell",
  "priority": 70, "businessValue": 40, "revenueValue": 40
}"#,
    r#"{
  "name": "Rewards credit card", "status": "active", "category": "cross-sell",
  "priority": 80, "businessValue": 80, "revenueValue": 90
}"#,
    r#"{
  "name": "Wealth-management account", "status": "active", "category": "cross-sell",
  "priority": 95, "businessValue": 95, "revenueValue": 250
}"#,
    r#"{
  "name": "Mortgage pre-approval", "status": "active", "category": "cross-sell",
  "priority": 90, "businessValue": 90, "revenueValue": 500
}"#,
];

/// The nine qualification rules: (offer index into `OFFERS`, body with `$OFFER`).
pub const RULES: [(usize, &str); 9] = [
    (0, r#"{ "name": "Savings — has checking", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasChecking", "operator": "eq", "value": true } }"#),
    (0, r#"{ "name": "Savings — no savings yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasSavings", "operator": "eq", "value": false } }"#),
    (1, r#"{ "name": "Card — no card yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasCreditCard", "operator": "eq", "value": false } }"#),
    (1, r#"{ "name": "Card — tenure >= 6mo", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.tenureMonths", "operator": "gte", "value": 6 } }"#),
    (2, r#"{ "name": "Wealth — no brokerage yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasBrokerage", "operator": "eq", "value": false } }"#),
    (2, r#"{ "name": "Wealth — premium tier", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.tier", "operator": "in", "value": ["premium", "private"] } }"#),
    (2, r#"{ "name": "Wealth — balance >= 50k", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.avgMonthlyBalance", "operator": "gte", "value": 50000 } }"#),
    (3, r#"{ "name": "Mortgage — none yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasMortgage", "operator": "eq", "value": false } }"#),
    (3, r#"{ "name": "Mortgage — tenure >= 24mo", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.tenureMonths", "operator": "gte", "value": 24 } }"#),
];

pub const CHANNELS: [&str; 3] = ["email", "in_app", "branch"];

pub fn channel_body(name: &str) -> String {
    format!("{{ \"name\": \"{name}\", \"status\": \"active\", \"couplingMode\": \"partial\" }}")
}

/// The flow body with `$SCHEMA_ID` to fill in.
pub const FLOW: &str = r#"{
    "key": "cross-sell",
    "name": "Cross-Sell",
    "draftConfig": {
      "version": 2,
      "flowConfig": { "experiment": { "enabled": true, "holdoutPercent": 10, "controlGroupAction": "no_offers" } },
      "nodes": [
        { "id": "inv",   "type": "inventory",      "phase": 1, "position": 0,
          "config": { "scope": "all", "includeStatuses": ["active"] } },
        { "id": "enr",   "type": "enrich",         "phase": 1, "position": 1,
          "config": { "sources": [ { "schemaId": "$SCHEMA_ID", "lookupKey": "customer_id",
            "fields": ["tier", "tenureMonths", "hasChecking", "hasSavings", "hasCreditCard",
              "hasMortgage", "hasBrokerage", "avgMonthlyBalance"] } ] } },
        { "id": "qual",  "type": "qualify",        "phase": 1, "position": 2,
          "config": { "mode": "all" } },
        { "id": "cp",    "type": "contact_policy", "phase": 1, "position": 3,
          "config": { "mode": "all" } },
        { "id": "score", "type": "score",          "phase": 2, "position": 4,
          "config": { "method": "formula", "formula": {
            "propensityWeight": 0.4, "relevanceWeight": 0.15,
            "impactWeight": 0.35, "emphasisWeight": 0.1, "upliftWeight": 0.5 } } },
        { "id": "rank",  "type": "rank",           "phase": 2, "position": 5,
          "config": { "method": "topN", "maxCandidates": 5 } },
        { "id": "out",   "type": "response",       "phase": 3, "position": 6,
          "config": { "responseFormat": "standard" } }
      ]
    }
  }"#;

/// Customer rows: `cust_42` is the tutorial's customer (36 months, premium, checking,
/// no savings, no card, holds a mortgage, balance under 50k); the others exercise
/// every offer.
pub const CUSTOMERS: &str = r#"{"rows": [
  {"customer_id": "cust_42", "tenureMonths": 36, "tier": "premium", "hasChecking": true, "hasSavings": false,
   "hasCreditCard": false, "hasMortgage": true, "hasBrokerage": false, "avgMonthlyBalance": 32000},
  {"customer_id": "cust_7", "tenureMonths": 60, "tier": "private", "hasChecking": true, "hasSavings": true,
   "hasCreditCard": true, "hasMortgage": false, "hasBrokerage": false, "avgMonthlyBalance": 125000},
  {"customer_id": "cust_3", "tenureMonths": 3, "tier": "basic", "hasChecking": false, "hasSavings": false,
   "hasCreditCard": false, "hasMortgage": false, "hasBrokerage": false, "avgMonthlyBalance": 800}
]}"#;

/// Ids of the entities the tutorial creates.
pub struct Tutorial {
    pub catalog: Catalog,
    pub schema_id: String,
    pub offer_ids: Vec<String>,
    pub flow_id: String,
    pub flow: Arc<CompiledFlow>,
}

/// Builds the tutorial's tenant and publishes its flow.
pub fn tutorial() -> Result<Tutorial, CatalogError> {
    let mut catalog = Catalog::new();
    let schema_id = catalog.add_schema(parse_json(SCHEMA.as_bytes())?)?.meta.id.clone();
    let rows: serde_json::Value = serde_json::from_str(CUSTOMERS).expect("demo rows are valid JSON");
    catalog.load_rows(&schema_id, rows["rows"].as_array().expect("rows array"), LoadMode::Upsert)?;
    let mut offer_ids = Vec::new();
    for body in OFFERS {
        offer_ids.push(catalog.add_offer(parse_json(body.as_bytes())?)?.meta.id.clone());
    }
    for (offer, body) in RULES {
        catalog.add_rule(parse_json(body.replace("$OFFER", &offer_ids[offer]).as_bytes())?)?;
    }
    for name in CHANNELS {
        catalog.add_channel(parse_json(channel_body(name).as_bytes())?)?;
    }
    let flow_body = FLOW.replace("$SCHEMA_ID", &schema_id);
    let flow_id = catalog.add_flow(parse_json(flow_body.as_bytes())?)?.meta.id.clone();
    let flow = catalog.publish(&flow_id, None)?;
    Ok(Tutorial { catalog, schema_id, offer_ids, flow_id, flow })
}

/// The tutorial's step-7 request.
pub fn request() -> RecommendRequest {
    parse_json(br#"{ "customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell" }"#)
        .expect("tutorial request parses")
}
