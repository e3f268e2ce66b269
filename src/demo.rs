//! The cross-sell tutorial (as in docs/tutorial.md) built
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
    (
        0,
        r#"{ "name": "Savings — has checking", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasChecking", "operator": "eq", "value": true } }"#,
    ),
    (
        0,
        r#"{ "name": "Savings — no savings yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasSavings", "operator": "eq", "value": false } }"#,
    ),
    (
        1,
        r#"{ "name": "Card — no card yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasCreditCard", "operator": "eq", "value": false } }"#,
    ),
    (
        1,
        r#"{ "name": "Card — tenure >= 6mo", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.tenureMonths", "operator": "gte", "value": 6 } }"#,
    ),
    (
        2,
        r#"{ "name": "Wealth — no brokerage yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasBrokerage", "operator": "eq", "value": false } }"#,
    ),
    (
        2,
        r#"{ "name": "Wealth — premium tier", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.tier", "operator": "in", "value": ["premium", "private"] } }"#,
    ),
    (
        2,
        r#"{ "name": "Wealth — balance >= 50k", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.avgMonthlyBalance", "operator": "gte", "value": 50000 } }"#,
    ),
    (
        3,
        r#"{ "name": "Mortgage — none yet", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.hasMortgage", "operator": "eq", "value": false } }"#,
    ),
    (
        3,
        r#"{ "name": "Mortgage — tenure >= 24mo", "ruleType": "attribute_condition", "scope": "offer", "scopeId": "$OFFER", "stage": "eligibility", "config": { "attribute": "customer.tenureMonths", "operator": "gte", "value": 24 } }"#,
    ),
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
    tutorial_with(Eligibility::Json)
}

/// Where the tutorial's eligibility rules come from.
pub enum Eligibility<'a> {
    /// The nine JSON qualification rules of step 3.
    Json,
    /// A rule-language file instead (the flow's Score node keeps the tutorial's weights).
    Rules(&'a str),
}

/// The tutorial's rule file, `plugins/cross_sell.rules`.
pub const CROSS_SELL_RULES: &str = include_str!("../plugins/cross_sell.rules");

/// Builds the tutorial's tenant with its eligibility rules from JSON or from a rule file.
pub fn tutorial_with(eligibility: Eligibility) -> Result<Tutorial, CatalogError> {
    let mut catalog = Catalog::new();
    let schema_id = catalog.add_schema(parse_json(SCHEMA.as_bytes())?)?.meta.id.clone();
    let rows: serde_json::Value = serde_json::from_str(CUSTOMERS).expect("demo rows are valid JSON");
    catalog.load_rows(&schema_id, rows["rows"].as_array().expect("rows array"), LoadMode::Upsert)?;
    let mut offer_ids = Vec::new();
    for body in OFFERS {
        offer_ids.push(catalog.add_offer(parse_json(body.as_bytes())?)?.meta.id.clone());
    }
    if let Eligibility::Json = eligibility {
        for (offer, body) in RULES {
            catalog.add_rule(parse_json(body.replace("$OFFER", &offer_ids[offer]).as_bytes())?)?;
        }
    }
    for name in CHANNELS {
        catalog.add_channel(parse_json(channel_body(name).as_bytes())?)?;
    }
    let flow_body = FLOW.replace("$SCHEMA_ID", &schema_id);
    let flow_id = catalog.add_flow(parse_json(flow_body.as_bytes())?)?.meta.id.clone();
    if let Eligibility::Rules(source) = eligibility {
        catalog.put_plugin("cross_sell.rules", source).map_err(|diags| {
            let text = crate::dsl::error::render("cross_sell.rules", source, &diags);
            crate::model::ValidationError::one("plugins/cross_sell.rules", text)
        })?;
    }
    let flow = catalog.publish(&flow_id, None)?;
    Ok(Tutorial { catalog, schema_id, offer_ids, flow_id, flow })
}

/// The tutorial's step-7 request.
pub fn request() -> RecommendRequest {
    parse_json(br#"{ "customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell" }"#)
        .expect("tutorial request parses")
}

/// An offer's rule-visible facts for tests and benchmarks that evaluate rules directly:
/// active, priority 80, businessValue 50, weight 100, category `c`.
pub fn sample_offer() -> crate::rules::OfferFacts {
    crate::rules::OfferFacts {
        id: "o".into(),
        name: "o".into(),
        category: "c".into(),
        status: "active".into(),
        priority: 80.0,
        business_value: 50.0,
        revenue_value: None,
        margin: None,
        weight: 100.0,
        mandatory: false,
    }
}

/// Ids of the tutorial's entities created through a running tenant.
#[derive(Debug, Clone)]
pub struct SentTutorial {
    pub schema_id: String,
    pub offer_ids: Vec<String>,
    pub flow_id: String,
}

/// The tutorial's setup sent to a running tenant as commands, the way a client would:
/// schema, `rows` (the tutorial's customers when `None`), offers, rules, channels, and the
/// flow `flow` (`FLOW` or a variant; `$SCHEMA_ID` is filled in), published.
pub async fn send_tutorial(
    t: &crate::tenant::TenantHandle,
    rows: Option<Vec<serde_json::Value>>,
    flow: &str,
) -> Result<SentTutorial, crate::tenant::TenantError> {
    use crate::model::{Channel, DecisionFlow, Offer, QualificationRule, Schema};
    use crate::tenant::command::{json_rows, Create, LoadRows, Publish};
    let schema_id = t.ask(Create::<Schema>(parse_json(SCHEMA.as_bytes())?)).await?.meta.id;
    let rows = match rows {
        Some(rows) => rows,
        None => {
            let all: serde_json::Value = serde_json::from_str(CUSTOMERS).expect("the tutorial's rows are JSON");
            all["rows"].as_array().cloned().unwrap_or_default()
        }
    };
    if !rows.is_empty() {
        let load = LoadRows { schema_id: schema_id.clone(), rows: json_rows(&rows), mode: LoadMode::InsertOrIgnore };
        t.ask(load).await?;
    }
    let mut offer_ids = Vec::new();
    for body in OFFERS {
        offer_ids.push(t.ask(Create::<Offer>(parse_json(body.as_bytes())?)).await?.meta.id);
    }
    for (offer, body) in RULES {
        let spec = parse_json(body.replace("$OFFER", &offer_ids[offer]).as_bytes())?;
        t.ask(Create::<QualificationRule>(spec)).await?;
    }
    for name in CHANNELS {
        t.ask(Create::<Channel>(parse_json(channel_body(name).as_bytes())?)).await?;
    }
    let flow = flow.replace("$SCHEMA_ID", &schema_id);
    let flow_id = t.ask(Create::<DecisionFlow>(parse_json(flow.as_bytes())?)).await?.meta.id;
    t.ask(Publish { id: flow_id.clone(), notes: None }).await?;
    Ok(SentTutorial { schema_id, offer_ids, flow_id })
}

/// A generated tenant for benchmarks and tests: `offers` active offers in 10
/// categories, `rules_per_offer` offer-scoped eligibility rules each (a numeric
/// threshold, a boolean, a tier list, cycling), a 20-field customer schema and one
/// customer row (`bench_customer`) that passes roughly half of the offers.
pub fn synthetic(offers: usize, rules_per_offer: usize) -> Result<Tutorial, CatalogError> {
    let mut catalog = Catalog::new();
    let mut fields = vec![serde_json::json!({"name": "customer_id", "dataType": "varchar", "isUnique": true})];
    for i in 0..19 {
        let ty = ["integer", "decimal", "boolean", "varchar"][i % 4];
        fields.push(serde_json::json!({"name": format!("f{i}"), "dataType": ty}));
    }
    let schema = serde_json::json!({"name": "customer", "fields": fields});
    let schema_id = catalog.add_schema(serde_json::from_value(schema).expect("schema"))?.meta.id.clone();
    let mut row = serde_json::Map::new();
    row.insert("customer_id".into(), "bench_customer".into());
    for i in 0..19 {
        let v = match i % 4 {
            0 => serde_json::json!(50),
            1 => serde_json::json!(1234.5),
            2 => serde_json::json!(i % 8 == 2),
            _ => serde_json::json!("gold"),
        };
        row.insert(format!("f{i}"), v);
    }
    catalog.load_rows(&schema_id, &[serde_json::Value::Object(row)], LoadMode::Upsert)?;
    let mut offer_ids = Vec::with_capacity(offers);
    for i in 0..offers {
        let body = serde_json::json!({
            "name": format!("Offer {i:04}"), "status": "active", "category": format!("cat-{}", i % 10),
            "priority": 10 + (i * 37) % 90, "businessValue": 5 + (i * 53) % 95
        });
        offer_ids.push(catalog.add_offer(serde_json::from_value(body).expect("offer"))?.meta.id.clone());
    }
    for (i, id) in offer_ids.iter().enumerate() {
        for r in 0..rules_per_offer {
            let config = match (i + r) % 3 {
                0 => {
                    serde_json::json!({"attribute": format!("customer.f{}", 4 * (r % 5)), "operator": "gte", "value": (i % 100) as f64})
                }
                1 => {
                    serde_json::json!({"attribute": format!("customer.f{}", 4 * (r % 4) + 2), "operator": "eq", "value": r % 2 == 0})
                }
                _ => {
                    serde_json::json!({"attribute": format!("customer.f{}", 4 * (r % 4) + 3), "operator": "in", "value": ["gold", "platinum"]})
                }
            };
            let body = serde_json::json!({
                "name": format!("rule {i}-{r}"), "ruleType": "attribute_condition", "scope": "offer",
                "scopeId": id, "stage": "eligibility", "config": config
            });
            catalog.add_rule(serde_json::from_value(body).expect("rule"))?;
        }
    }
    for name in CHANNELS {
        catalog.add_channel(parse_json(channel_body(name).as_bytes())?)?;
    }
    let flow = FLOW.replace("$SCHEMA_ID", &schema_id).replace("cross-sell", "synthetic");
    let mut flow: serde_json::Value = serde_json::from_str(&flow).expect("flow");
    // Load every field, and no holdout so every benchmark request is a treated decision.
    flow["draftConfig"]["nodes"][1]["config"]["sources"][0]["fields"] = serde_json::json!([]);
    flow["draftConfig"]["flowConfig"] = serde_json::json!({});
    let flow_id = catalog.add_flow(serde_json::from_value(flow).expect("flow"))?.meta.id.clone();
    let flow = catalog.publish(&flow_id, None)?;
    Ok(Tutorial { catalog, schema_id, offer_ids, flow_id, flow })
}

/// The request the synthetic tenant is benchmarked with.
pub fn synthetic_request() -> RecommendRequest {
    RecommendRequest { customer_id: "bench_customer".into(), channel: Some("in_app".into()), ..Default::default() }
}

/// The tenant's JSON qualification rules written as a rule-language file (offer-scoped
/// `attribute_condition`s only, as `synthetic` makes), for comparing the front-ends.
pub fn rules_as_language(catalog: &Catalog) -> String {
    let mut out = String::new();
    for rule in &catalog.rules {
        let Ok(cond) = rule.spec.validate() else { continue };
        let value = cond.value.as_ref().map(|v| v.to_string()).unwrap_or_default();
        let test = match cond.operator {
            crate::rules::json::Operator::In => format!("{} in {value}", cond.attribute),
            crate::rules::json::Operator::Gte => format!("{} >= {value}", cond.attribute),
            crate::rules::json::Operator::Eq => format!("{} == {value}", cond.attribute),
            other => unimplemented!("rules_as_language does not translate `{}`", other.name()),
        };
        let offer = rule.spec.scope_id.as_deref().unwrap_or_default();
        out.push_str(&format!("rule \"{}\" for offer id \"{offer}\" {{ {test} }}\n", rule.spec.name));
    }
    out
}
