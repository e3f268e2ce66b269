//! The HTTP API over real HTTP: a server on port 0 per test, driven by a tiny HTTP/1.1 client
//! (tests/support). Each endpoint's success and failure paths, bad input, hostile input,
//! tenants and keys, metrics, and the OpenAPI document against the router.
//!
//! Every response the support client reads is checked for an `x-request-id` header.

mod support;

use std::collections::BTreeSet;

use serde_json::{json, Value};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const JSON: (&str, &str) = ("Content-Type", "application/json");

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap_or_else(|| panic!("no id in {v}")).to_string()
}

/// The customer schema's fields (as created) plus `extra`.
fn fields_plus(extra: &[Value]) -> Value {
    let mut fields = customer_schema()["fields"].as_array().cloned().unwrap_or_default();
    fields.extend_from_slice(extra);
    Value::Array(fields)
}

fn recommend_body(customer: &str, flow: &str) -> Value {
    json!({"customerId": customer, "channel": "in_app", "decisionFlowKey": flow})
}

fn respond_body(rec: &Value, rank: u32, key: Option<&str>) -> Value {
    let mut body = json!({"customerId": rec["customerId"], "recommendationId": rec["recommendationId"],
                          "rank": rank, "outcome": "click"});
    if let Some(key) = key {
        body["idempotencyKey"] = json!(key);
    }
    body
}

#[tokio::test]
async fn schemas_crud_pagination_and_validation() {
    let server = TestServer::start().await;
    let api = &server.admin;

    let customer = api.create("/api/v1/schemas", &customer_schema()).await;
    assert_eq!(customer["name"], "customer");
    assert_eq!(customer["fields"].as_array().map(Vec::len), Some(9));
    let customer_id = id(&customer);
    let accounts_spec = json!({"name": "accounts", "fields": [
        {"name": "account_id", "dataType": "varchar", "isUnique": true},
        {"name": "opened", "dataType": "date"}, {"name": "balance", "dataType": "float"},
        {"name": "notes", "dataType": "text"}, {"name": "big", "dataType": "bigint"},
        {"name": "at", "dataType": "timestamp"}, {"name": "extra", "dataType": "json"}]});
    let accounts = api.create("/api/v1/schemas", &accounts_spec).await;
    let accounts_id = id(&accounts);

    let duplicate = api.post("/api/v1/schemas", &customer_schema()).await;
    duplicate.expect_error(409, "CONFLICT");
    let unknown_type = json!({"name": "m", "fields": [{"name": "a", "dataType": "money"}]});
    let message = api.post("/api/v1/schemas", &unknown_type).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("fields[0].dataType"), "{message}");

    // Lists: newest first, keyset pages.
    let list = api.get("/api/v1/schemas").await.expect(200);
    assert_eq!(list["pagination"], json!({"limit": 25, "cursor": null, "hasMore": false, "total": 2}));
    let names: Vec<&str> = list["data"].as_array().unwrap().iter().filter_map(|s| s["name"].as_str()).collect();
    assert_eq!(names, ["accounts", "customer"]);
    let first = api.get("/api/v1/schemas?limit=1").await.expect(200);
    assert_eq!(first["pagination"], json!({"limit": 1, "cursor": accounts_id, "hasMore": true, "total": 2}));
    let second = api.get(&format!("/api/v1/schemas?limit=1&cursor={accounts_id}")).await.expect(200);
    assert_eq!(second["data"][0]["id"], customer_id.as_str());
    assert_eq!(second["pagination"], json!({"limit": 1, "cursor": null, "hasMore": false, "total": 2}));
    for bad in ["limit=0", "limit=101", "limit=x"] {
        let message = api.get(&format!("/api/v1/schemas?{bad}")).await.expect_error(400, "BAD_REQUEST");
        assert!(message.contains("limit"), "{bad}: {message}");
    }
    api.get("/api/v1/schemas?cursor=no-such-id").await.expect_error(400, "BAD_REQUEST");

    // Get, update (fields may only be added), delete.
    let got = api.get(&format!("/api/v1/schemas/{customer_id}")).await.expect(200);
    assert_eq!(got["name"], "customer");
    api.get("/api/v1/schemas/no-such-id").await.expect_error(404, "NOT_FOUND");
    let path = format!("/api/v1/schemas/{customer_id}");
    let segment = json!({"name": "segment", "dataType": "varchar"});
    let added = api.put(&path, &json!({"fields": fields_plus(&[segment])})).await.expect(200);
    assert_eq!(added["fields"].as_array().map(Vec::len), Some(10));
    assert_eq!(added["fields"][9]["name"], "segment");
    assert_eq!(added["displayName"], "Customer", "PUT keeps the fields it was not given");
    let mut retyped = fields_plus(&[json!({"name": "segment", "dataType": "varchar"})]);
    retyped[1]["dataType"] = json!("varchar");
    api.put(&path, &json!({"fields": retyped})).await.expect_error(409, "CONFLICT");
    let dropped = Value::Array(customer_schema()["fields"].as_array().unwrap()[..3].to_vec());
    api.put(&path, &json!({"fields": dropped})).await.expect_error(409, "CONFLICT");
    assert_eq!(api.get(&path).await.expect(200)["fields"].as_array().map(Vec::len), Some(10));
    api.put("/api/v1/schemas/no-such-id", &json!({"displayName": "x"})).await.expect_error(404, "NOT_FOUND");
    api.put(&path, &json!(["not", "an", "object"])).await.expect_error(400, "BAD_REQUEST");

    assert_eq!(api.delete(&path).await.expect(204), Value::Null);
    api.get(&path).await.expect_error(404, "NOT_FOUND");
    api.delete(&path).await.expect_error(404, "NOT_FOUND");
    assert_eq!(api.get("/api/v1/schemas").await.expect(200)["pagination"]["total"], 1);
    server.stop().await;
}

#[tokio::test]
async fn schema_rows_insert_upsert_read_and_errors() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let schema = id(&api.create("/api/v1/schemas", &customer_schema()).await);
    let data = format!("/api/v1/schemas/{schema}/data");

    let inserted = api.create(&data, &json!({"rows": [tutorial_customer("c1"), tutorial_customer("c2")]})).await;
    assert_eq!(inserted["inserted"], 2);
    assert!(inserted["tableName"].as_str().is_some_and(|t| !t.is_empty()), "{inserted}");

    // POST is insert-or-ignore: an existing key is skipped, not replaced.
    let mut changed = tutorial_customer("c1");
    changed["tier"] = json!("gold");
    let skipped = api.create(&data, &json!({"rows": [changed]})).await;
    assert_eq!(skipped["inserted"], 0);
    let rows = api.get(&data).await.expect(200);
    assert_eq!(rows["total"], 2);
    let tier_of = |rows: &Value, key: &str| {
        rows["rows"].as_array().unwrap().iter().find(|r| r["customer_id"] == key).map(|r| r["tier"].clone())
    };
    assert_eq!(tier_of(&rows, "c1"), Some(json!("premium")));

    // PUT upserts by the unique field.
    let upserted = api.put(&data, &json!({"rows": [changed, tutorial_customer("c3")]})).await;
    assert!(upserted.status == 200 || upserted.status == 201, "{}", upserted.brief());
    let rows = api.get(&data).await.expect(200);
    assert_eq!(rows["total"], 3);
    assert_eq!(tier_of(&rows, "c1"), Some(json!("gold")));

    let page = api.get(&format!("{data}?limit=1&offset=1")).await.expect(200);
    assert_eq!((page["total"].clone(), page["limit"].clone(), page["offset"].clone()), (json!(3), json!(1), json!(1)));
    assert_eq!(page["rows"].as_array().map(Vec::len), Some(1));
    api.get(&format!("{data}?limit=abc")).await.expect_error(400, "BAD_REQUEST");

    // Errors name the row; a bad row stores nothing.
    let bad_column = json!({"rows": [tutorial_customer("c4"), {"customer_id": "c5", "colour": "red"}]});
    let message = api.post(&data, &bad_column).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("rows[1].colour"), "{message}");
    let wrong_type = json!({"rows": [{"customer_id": "c6", "tenureMonths": "abc"}]});
    let message = api.post(&data, &wrong_type).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("rows[0].tenureMonths"), "{message}");
    let message = api.put(&data, &wrong_type).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("rows[0].tenureMonths"), "{message}");
    api.post(&data, &json!({"rows": []})).await.expect_error(400, "BAD_REQUEST");
    api.post(&data, &json!({"data": []})).await.expect_error(400, "BAD_REQUEST");
    api.post(&data, &json!({"rows": [1]})).await.expect_error(400, "BAD_REQUEST");
    assert_eq!(api.get(&data).await.expect(200)["total"], 3);

    let body = serde_json::to_vec(&json!({"rows": [tutorial_customer("c7")]})).unwrap();
    api.send("POST", &data, &[], Some(&body)).await.expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    api.post("/api/v1/schemas/nope/data", &json!({"rows": [tutorial_customer("c8")]}))
        .await
        .expect_error(404, "NOT_FOUND");
    api.get("/api/v1/schemas/nope/data").await.expect_error(404, "NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn schema_rows_reject_out_of_range_integers_and_non_finite_decimals() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let schema = id(&api.create("/api/v1/schemas", &customer_schema()).await);
    let data = format!("/api/v1/schemas/{schema}/data");
    let cases: [(&[u8], &str); 4] = [
        (br#"{"rows":[{"customer_id":"a","tenureMonths":99999999999999999999}]}"#, "rows[0].tenureMonths"),
        (br#"{"rows":[{"customer_id":"b","tenureMonths":1e300}]}"#, "rows[0].tenureMonths"),
        (br#"{"rows":[{"customer_id":"c","avgMonthlyBalance":"NaN"}]}"#, "rows[0].avgMonthlyBalance"),
        (br#"{"rows":[{"customer_id":"d","avgMonthlyBalance":"inf"}]}"#, "rows[0].avgMonthlyBalance"),
    ];
    let mut failures = Vec::new();
    for (body, field) in cases {
        let reply = api.send("POST", &data, &[JSON], Some(body)).await;
        if reply.status != 400 || !reply.text().contains(field) {
            failures.push(format!("{}: {}", String::from_utf8_lossy(body), reply.brief()));
        }
    }
    assert!(failures.is_empty(), "accepted out-of-range values:\n{}", failures.join("\n"));
    server.stop().await;
}

#[tokio::test]
async fn offers_crud_and_validation() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let card = api.create("/api/v1/offers", &offer("Rewards credit card", 80, 80, 90)).await;
    assert_eq!(card["name"], "Rewards credit card");
    assert_eq!(card["weight"], 100.0, "weight defaults to 100");
    let card_id = id(&card);
    let savings_id = id(&api.create("/api/v1/offers", &offer("High-yield savings", 70, 40, 40)).await);

    api.post("/api/v1/offers", &offer("Rewards credit card", 1, 1, 1)).await.expect_error(409, "CONFLICT");
    let message = api.post("/api/v1/offers", &offer("Too keen", 120, 1, 1)).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("priority: must be between 0 and 100"), "{message}");
    let message = api.post("/api/v1/offers", &json!({"priority": 5})).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("name"), "{message}");

    let path = format!("/api/v1/offers/{card_id}");
    let updated = api.put(&path, &json!({"priority": 55})).await.expect(200);
    assert_eq!(updated["priority"], 55.0);
    for kept in ["name", "businessValue", "revenueValue", "category", "status", "weight", "createdAt"] {
        assert_eq!(updated[kept], card[kept], "PUT changed `{kept}`");
    }
    let message = api.put(&path, &json!({"priority": 120})).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("priority: must be between 0 and 100"), "{message}");
    api.put(&path, &json!({"name": "High-yield savings"})).await.expect_error(409, "CONFLICT");
    let paused = api.put(&path, &json!({"status": "paused"})).await.expect(200);
    assert_eq!(paused["status"], "paused");
    assert_eq!(api.get(&path).await.expect(200)["priority"], 55.0);

    let list = api.get("/api/v1/offers").await.expect(200);
    assert_eq!(list["pagination"]["total"], 2);
    assert_eq!(list["data"][0]["id"], savings_id.as_str(), "newest first");

    assert_eq!(api.delete(&path).await.status, 204);
    api.get(&path).await.expect_error(404, "NOT_FOUND");
    api.put(&path, &json!({"priority": 1})).await.expect_error(404, "NOT_FOUND");
    api.delete(&path).await.expect_error(404, "NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn qualification_rules_crud_and_did_you_mean() {
    let server = TestServer::start().await;
    let api = &server.admin;
    api.create("/api/v1/schemas", &customer_schema()).await;
    let card = id(&api.create("/api/v1/offers", &offer("Rewards credit card", 80, 80, 90)).await);

    let typo = rule("Card — tenure", &card, "customer.tenureMonth", "gte", json!(6));
    let message = api.post("/api/v1/qualification-rules", &typo).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("did you mean") && message.contains("customer.tenureMonths"), "{message}");
    let no_offer = rule("Card — tenure", "no-such-offer", "customer.tenureMonths", "gte", json!(6));
    let message = api.post("/api/v1/qualification-rules", &no_offer).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("scopeId"), "{message}");
    let bad_operator = rule("Card — tenure", &card, "customer.tenureMonths", "approx", json!(6));
    api.post("/api/v1/qualification-rules", &bad_operator).await.expect_error(400, "BAD_REQUEST");

    let good = rule("Card — tenure", &card, "customer.tenureMonths", "gte", json!(6));
    let created = api.create("/api/v1/qualification-rules", &good).await;
    assert_eq!(created["config"]["operator"], "gte");
    api.post("/api/v1/qualification-rules", &good).await.expect_error(409, "CONFLICT");
    let symbolic = rule("Card — no card", &card, "customer.hasCreditCard", "==", json!(false));
    api.create("/api/v1/qualification-rules", &symbolic).await;

    let path = format!("/api/v1/qualification-rules/{}", id(&created));
    assert_eq!(api.get(&path).await.expect(200)["name"], "Card — tenure");
    let config = json!({"attribute": "customer.tenureMonths", "operator": "gte", "value": 12});
    let updated = api.put(&path, &json!({"config": config})).await.expect(200);
    assert_eq!(updated["config"]["value"], 12);
    assert_eq!(updated["scopeId"], card.as_str());
    let typo_config = json!({"config": {"attribute": "customer.tenureMonht", "operator": "gte", "value": 1}});
    let message = api.put(&path, &typo_config).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("did you mean"), "{message}");
    assert_eq!(api.get("/api/v1/qualification-rules").await.expect(200)["pagination"]["total"], 2);
    assert_eq!(api.delete(&path).await.status, 204);
    api.get(&path).await.expect_error(404, "NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn channels_crud_and_duplicate_names() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let email_spec = json!({"name": "email", "status": "active", "couplingMode": "partial"});
    let email = api.create("/api/v1/channels", &email_spec).await;
    let in_app = api.create("/api/v1/channels", &json!({"name": "in_app", "status": "active"})).await;
    api.post("/api/v1/channels", &json!({"name": "email"})).await.expect_error(409, "CONFLICT");
    api.post("/api/v1/channels", &json!({"name": "x", "couplingMode": "sometimes"}))
        .await
        .expect_error(400, "BAD_REQUEST");

    let path = format!("/api/v1/channels/{}", id(&email));
    api.put(&path, &json!({"name": "in_app"})).await.expect_error(409, "CONFLICT");
    let updated = api.put(&path, &json!({"couplingMode": "atomic"})).await.expect(200);
    assert_eq!((updated["name"].as_str(), updated["couplingMode"].as_str()), (Some("email"), Some("atomic")));
    assert_eq!(api.get(&path).await.expect(200)["couplingMode"], "atomic");
    let list = api.get("/api/v1/channels").await.expect(200);
    assert_eq!(list["data"][0]["id"], in_app["id"]);
    assert_eq!(api.delete(&path).await.status, 204);
    api.get(&path).await.expect_error(404, "NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn decision_flows_publish_versions_rollback_delete() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let schema = id(&api.create("/api/v1/schemas", &customer_schema()).await);
    api.create("/api/v1/offers", &offer("Rewards credit card", 80, 80, 90)).await;

    let short = json!({"propensityWeight": 0.4, "relevanceWeight": 0.1, "impactWeight": 0.35, "emphasisWeight": 0.1});
    let message = api.post("/api/v1/decision-flows", &flow_spec("bad", &schema, short)).await;
    let message = message.expect_error(400, "BAD_REQUEST");
    assert_eq!(
        message,
        "draftConfig.nodes[4].config.formula: \
         propensityWeight+relevanceWeight+impactWeight+emphasisWeight must be 1.0, got 0.95"
    );

    let flow = api.create("/api/v1/decision-flows", &flow_spec("cross-sell", &schema, tutorial_formula())).await;
    let flow_id = id(&flow);
    api.post("/api/v1/decision-flows", &flow_spec("cross-sell", &schema, tutorial_formula()))
        .await
        .expect_error(409, "CONFLICT");
    let path = format!("/api/v1/decision-flows/{flow_id}");
    assert_eq!(api.get(&path).await.expect(200)["key"], "cross-sell");
    api.delete(&format!("/api/v1/schemas/{schema}")).await.expect_error(409, "CONFLICT");

    let versions_path = format!("/api/v1/decision-flows/versions?id={flow_id}");
    assert_eq!(api.get(&versions_path).await.expect(200)["versions"], json!([]));
    api.post("/api/v1/decision-flows/publish", &json!({"id": flow_id})).await.expect(200);
    let mut changed = tutorial_formula();
    changed["propensityWeight"] = json!(0.5);
    changed["relevanceWeight"] = json!(0.05);
    let draft = flow_spec("cross-sell", &schema, changed)["draftConfig"].clone();
    api.put(&path, &json!({"draftConfig": draft})).await.expect(200);
    let v2 = api.post("/api/v1/decision-flows/publish", &json!({"id": flow_id, "notes": "more propensity"})).await;
    v2.expect(200);
    let rolled = api.post("/api/v1/decision-flows/rollback", &json!({"id": flow_id, "version": 1})).await;
    rolled.expect(200);

    let versions = api.get(&versions_path).await.expect(200);
    let versions = versions["versions"].as_array().cloned().unwrap_or_default();
    let numbers: Vec<u64> = versions.iter().filter_map(|v| v["version"].as_u64()).collect();
    assert_eq!(numbers, [1, 2, 3], "{versions:?}");
    assert_eq!(versions[1]["notes"], "more propensity");
    let notes = versions[2]["notes"].as_str().unwrap_or_default();
    assert!(notes.starts_with("Rollback to v1"), "{notes}");
    let rec = api.post("/api/v1/recommend", &recommend_body("c1", "cross-sell")).await.expect(200);
    assert_eq!(rec["decisionFlowVersion"], 3);

    api.post("/api/v1/decision-flows/rollback", &json!({"id": flow_id, "version": 9}))
        .await
        .expect_error(400, "BAD_REQUEST");
    api.post("/api/v1/decision-flows/rollback", &json!({"id": "nope", "version": 1}))
        .await
        .expect_error(404, "NOT_FOUND");
    api.post("/api/v1/decision-flows/publish", &json!({"id": "nope"})).await.expect_error(404, "NOT_FOUND");
    api.post("/api/v1/decision-flows/publish", &json!({})).await.expect_error(400, "BAD_REQUEST");
    api.get("/api/v1/decision-flows/versions").await.expect_error(400, "BAD_REQUEST");
    api.get("/api/v1/decision-flows/versions?id=nope").await.expect_error(404, "NOT_FOUND");

    let message = api.delete(&path).await.expect_error(409, "CONFLICT");
    assert!(message.contains("published"), "{message}");
    let draft_only = api.create("/api/v1/decision-flows", &flow_spec("draft-only", &schema, tutorial_formula())).await;
    let draft_path = format!("/api/v1/decision-flows/{}", id(&draft_only));
    assert_eq!(api.delete(&draft_path).await.status, 204);
    api.get(&draft_path).await.expect_error(404, "NOT_FOUND");
    assert_eq!(api.get("/api/v1/decision-flows").await.expect(200)["pagination"]["total"], 1);
    server.stop().await;
}

const GOOD_RULES: &str = r#"
rule "Card — no card yet" for offer "Rewards credit card" {
    customer.hasCreditCard == false and customer.tenureMonths >= 6
}
score for flow "cross-sell" {
    weights propensity 0.4, relevance 0.15, impact 0.35, emphasis 0.1, uplift 0.5
}
"#;

/// Three mistakes: an unknown offer (line 1), a misspelled attribute (line 2), weights summing
/// to 1.1 (line 5).
const BAD_RULES: &str = "rule \"r1\" for offer \"Nope\" {\n  customer.tenureMonth >= 6\n}\n\
score for flow \"cross-sell\" {\n  weights propensity 0.5, relevance 0.15, impact 0.35, emphasis 0.1\n}\n";

#[tokio::test]
async fn plugins_put_get_delete_and_diagnostics() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let text = [("Content-Type", "text/plain")];

    let put = api.send("PUT", "/api/v1/plugins/cards.rules", &text, Some(GOOD_RULES.as_bytes())).await;
    let put = put.expect(200);
    assert_eq!(
        (put["name"].as_str(), put["rules"].as_u64(), put["scores"].as_u64()),
        (Some("cards.rules"), Some(1), Some(1))
    );
    let got = api.get("/api/v1/plugins/cards.rules").await.expect(200);
    assert_eq!(got["source"], GOOD_RULES);
    let list = api.get("/api/v1/plugins").await.expect(200);
    assert!(list.to_string().contains("cards.rules"), "{list}");

    let rejected = api.send("PUT", "/api/v1/plugins/cards.rules", &text, Some(BAD_RULES.as_bytes())).await;
    let body = rejected.expect(400);
    assert_eq!(body["error"]["code"], "BAD_REQUEST");
    let diagnostics =
        body["error"]["details"]["diagnostics"].as_array().unwrap_or_else(|| panic!("no diagnostics: {body}"));
    assert_eq!(diagnostics.len(), 3, "{body}");
    for d in diagnostics {
        assert!(d["line"].as_u64().is_some_and(|l| l >= 1), "{d}");
        assert!(d["column"].as_u64().is_some_and(|c| c >= 1), "{d}");
        assert!(d["code"].as_str().is_some_and(|c| !c.is_empty()), "{d}");
    }
    let lines: Vec<u64> = diagnostics.iter().filter_map(|d| d["line"].as_u64()).collect();
    assert_eq!(lines, [1, 2, 5], "{body}");
    assert!(diagnostics[1].to_string().contains("did you mean"), "{}", diagnostics[1]);
    assert_eq!(api.get("/api/v1/plugins/cards.rules").await.expect(200)["source"], GOOD_RULES, "nothing changed");

    let bad_name = api.send("PUT", "/api/v1/plugins/cards.txt", &text, Some(GOOD_RULES.as_bytes())).await;
    assert!(bad_name.expect_error(400, "BAD_REQUEST").contains("name"));
    assert_eq!(api.delete("/api/v1/plugins/cards.rules").await.status, 204);
    api.get("/api/v1/plugins/cards.rules").await.expect_error(404, "NOT_FOUND");
    api.delete("/api/v1/plugins/cards.rules").await.expect_error(404, "NOT_FOUND");
    server.stop().await;
}

#[tokio::test]
async fn plugin_rejection_envelope_carries_the_request_id() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let text = [("Content-Type", "text/plain")];
    let rejected = api.send("PUT", "/api/v1/plugins/bad.rules", &text, Some(b"rule {")).await;
    let body = rejected.expect(400);
    assert_eq!(body["error"]["requestId"].as_str(), rejected.header("x-request-id"), "{body}");
    assert_eq!(body["error"]["recommendationId"].as_str(), rejected.header("x-request-id"), "{body}");
    server.stop().await;
}

#[tokio::test]
async fn recommend_tutorial_explain_and_errors() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;

    let rec = recommend(api, "cust_42").await;
    let names: Vec<&str> =
        rec["decisions"].as_array().unwrap().iter().filter_map(|d| d["offerName"].as_str()).collect();
    assert_eq!(names, ["Rewards credit card", "High-yield savings"], "{rec}");
    assert_eq!(rec["decisions"][0]["rank"], 1);
    assert_eq!(rec["decisions"][0]["offerId"], t.card.as_str());
    assert_eq!(rec["decisions"][1]["rank"], 2);
    assert_eq!(rec["count"], 2);
    assert_eq!(rec["meta"]["totalCandidates"], 4);
    assert_eq!(rec["meta"]["afterQualification"], 2);
    assert_eq!((rec["decisionFlowKey"].as_str(), rec["decisionFlowVersion"].as_u64()), (Some("cross-sell"), Some(1)));
    for field in ["interactionId", "recommendationId", "customerId", "channel"] {
        assert!(rec[field].as_str().is_some_and(|s| !s.is_empty()), "{field}: {rec}");
    }

    let explained = api.post("/api/v1/recommend?explain=true", &recommend_body("cust_42", "cross-sell")).await;
    let explained = explained.expect(200);
    let scores = &explained["decisions"][0]["explanation"]["rankingScores"];
    assert!(scores.is_object(), "{explained}");
    assert_eq!(scores["weights"]["upliftWeight"], 0.5);
    assert!(rec["decisions"][0].get("explanation").is_none(), "no explanation without ?explain");

    let limited = json!({"customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell", "limit": 1});
    assert_eq!(api.post("/api/v1/recommend", &limited).await.expect(200)["count"], 1);

    let message = api.post("/api/v1/recommend", &recommend_body("cust_42", "no-such-flow")).await;
    assert!(message.expect_error(404, "NOT_FOUND").contains("no-such-flow"));
    api.create("/api/v1/decision-flows", &flow_spec("unpublished", &t.schema, tutorial_formula())).await;
    let message = api.post("/api/v1/recommend", &recommend_body("cust_42", "unpublished")).await;
    let message = message.expect_error(409, "CONFLICT");
    assert!(message.contains("publish"), "{message}");

    let too_many = json!({"customerId": "cust_42", "decisionFlowKey": "cross-sell", "limit": 51});
    let message = api.post("/api/v1/recommend", &too_many).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("limit"), "{message}");
    let zero = json!({"customerId": "cust_42", "decisionFlowKey": "cross-sell", "limit": 0});
    api.post("/api/v1/recommend", &zero).await.expect_error(400, "BAD_REQUEST");
    let message = api.post("/api/v1/recommend", &json!({"decisionFlowKey": "cross-sell"})).await;
    assert!(message.expect_error(400, "BAD_REQUEST").contains("customerId"));
    let message = api.post("/api/v1/recommend", &json!({"customerId": "cust_42"})).await;
    assert!(message.expect_error(400, "BAD_REQUEST").contains("decisionFlowKey"));
    server.stop().await;
}

#[tokio::test]
async fn respond_idempotency_and_errors() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let rec = recommend(api, "cust_42").await;

    let first = api.post("/api/v1/respond", &respond_body(&rec, 1, Some("k1"))).await.expect(201);
    assert_eq!((first["recorded"].as_bool(), first["duplicate"].as_bool()), (Some(true), Some(false)));
    let replay = api.post("/api/v1/respond", &respond_body(&rec, 1, Some("k1"))).await.expect(200);
    assert_eq!(replay["duplicate"], true);
    assert_eq!(replay["responseId"], first["responseId"]);

    let message = api.post("/api/v1/respond", &respond_body(&rec, 1, None)).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("idempotencyKey"), "{message}");
    let body = serde_json::to_vec(&respond_body(&rec, 2, None)).unwrap();
    let headed = api.send("POST", "/api/v1/respond", &[JSON, ("Idempotency-Key", "h1")], Some(&body)).await;
    let headed = headed.expect(201);
    assert_eq!(headed["idempotencyKey"], "h1");
    let headed_replay = api.send("POST", "/api/v1/respond", &[JSON, ("Idempotency-Key", "h1")], Some(&body)).await;
    let headed_replay = headed_replay.expect(200);
    assert_eq!(
        (headed_replay["duplicate"].as_bool(), &headed_replay["responseId"]),
        (Some(true), &headed["responseId"])
    );

    let mut unknown = respond_body(&rec, 1, Some("k2"));
    unknown["recommendationId"] = json!("no-such-recommendation");
    api.post("/api/v1/respond", &unknown).await.expect_error(404, "NOT_FOUND");
    let message =
        api.post("/api/v1/respond", &respond_body(&rec, 3, Some("k3"))).await.expect_error(400, "BAD_REQUEST");
    assert!(message.contains("rank"), "{message}");
    let mut bad_outcome = respond_body(&rec, 1, Some("k4"));
    bad_outcome["outcome"] = json!("teleport");
    assert!(api.post("/api/v1/respond", &bad_outcome).await.expect_error(400, "BAD_REQUEST").contains("outcome"));
    let mut other_customer = respond_body(&rec, 1, Some("k5"));
    other_customer["customerId"] = json!("someone-else");
    api.post("/api/v1/respond", &other_customer).await.expect_error(400, "BAD_REQUEST");
    let by_offer = json!({"customerId": "cust_42", "recommendationId": rec["recommendationId"],
                          "offerId": rec["decisions"][1]["offerId"], "outcome": "dismiss", "idempotencyKey": "k6"});
    assert_eq!(api.post("/api/v1/respond", &by_offer).await.expect(201)["rank"], 2);
    server.stop().await;
}

#[tokio::test]
async fn respond_bulk_partial_and_total_failure() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let rec = recommend(api, "cust_42").await;

    let mixed = json!({"outcomes": [respond_body(&rec, 1, Some("b1")), respond_body(&rec, 7, Some("b2")),
                                    respond_body(&rec, 2, None), respond_body(&rec, 2, Some("b4"))]});
    let reply = api.post("/api/v1/respond/bulk", &mixed).await.expect(200);
    assert_eq!(
        (reply["processed"].as_u64(), reply["succeeded"].as_u64(), reply["failed"].as_u64()),
        (Some(4), Some(2), Some(2))
    );
    let errors = reply["errors"].as_array().unwrap_or_else(|| panic!("no errors array: {reply}"));
    let indexes: Vec<u64> = errors.iter().filter_map(|e| e["index"].as_u64()).collect();
    assert_eq!(indexes, [1, 2], "{reply}");
    assert!(errors[0]["error"].as_str().is_some_and(|e| e.contains("rank")), "{reply}");
    assert!(errors[1]["error"].as_str().is_some_and(|e| e.contains("idempotencyKey")), "{reply}");

    let all_bad = json!({"outcomes": [respond_body(&rec, 9, Some("c1")), {"outcome": "click"}]});
    let reply = api.post("/api/v1/respond/bulk", &all_bad).await;
    assert_eq!(reply.status, 422, "{}", reply.brief());
    assert_eq!(reply.json()["failed"], 2);
    api.post("/api/v1/respond/bulk", &json!({"outcomes": []})).await.expect_error(400, "BAD_REQUEST");
    api.post("/api/v1/respond/bulk", &json!({})).await.expect_error(400, "BAD_REQUEST");
    server.stop().await;
}

#[tokio::test]
async fn outcome_types_whoami_healthz_metrics_openapi() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let anonymous = server.client(None);

    let types = api.get("/api/v1/outcome-types").await.expect(200);
    let list = types.as_array().or_else(|| types["data"].as_array()).cloned().unwrap_or_default();
    let click = list.iter().find(|t| t["key"] == "click").unwrap_or_else(|| panic!("no click: {types}"));
    assert_eq!(click["classification"], "positive");
    let class_of = |key: &str| list.iter().find(|t| t["key"] == key).map(|t| t["classification"].clone());
    assert_eq!(class_of("impression"), Some(json!("neutral")));
    assert_eq!(class_of("not_interested"), Some(json!("negative")));

    let me = api.get("/api/v1/whoami").await.expect(200);
    assert_eq!((me["tenantId"].as_str(), me["role"].as_str()), (Some(TENANT), Some("admin")));
    assert!(!me.to_string().contains(ADMIN_KEY), "whoami must not echo the key");

    assert_eq!(anonymous.get("/healthz").await.expect(200)["status"], "ok");
    // Metrics name every tenant's flows: operator admin keys only.
    anonymous.get("/metrics").await.expect_error(401, "UNAUTHORIZED");
    let metrics = api.get("/metrics").await;
    assert_eq!(metrics.status, 200);
    assert!(metrics.header("content-type").is_some_and(|t| t.starts_with("text/plain") || t.contains("openmetrics")));
    let text = metrics.text();
    for needle in [
        "arbiter_http_requests_total{",
        "route=\"/api/v1/whoami\"",
        "route=\"/api/v1/outcome-types\"",
        "arbiter_http_request_duration_seconds_bucket",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }
    let doc = anonymous.get("/api/v1/openapi.json").await.expect(200);
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')), "{doc}");
    server.stop().await;
}

#[tokio::test]
async fn metrics_count_loaded_tenants() {
    let server = TestServer::start().await;
    server.admin.create("/api/v1/tenants", &json!({"id": "second"})).await;
    let text = server.admin.get("/metrics").await.text();
    assert!(
        text.lines().any(|l| l == "arbiter_tenants 2"),
        "{}",
        text.lines().filter(|l| l.contains("tenants")).collect::<Vec<_>>().join("\n")
    );
    server.stop().await;
}

#[tokio::test]
async fn openapi_documents_exactly_the_router_routes() {
    let server = TestServer::start().await;
    let doc = server.client(None).get("/api/v1/openapi.json").await.expect(200);
    let paths = doc["paths"].as_object().unwrap_or_else(|| panic!("no paths: {doc}"));
    let documented: BTreeSet<(String, String)> = paths
        .iter()
        .flat_map(|(path, ops)| {
            let methods = ops.as_object().map(|o| o.keys().cloned().collect::<Vec<_>>()).unwrap_or_default();
            methods.into_iter().map(move |m| (m.to_uppercase(), path.clone()))
        })
        .collect();
    let router = arbiter::api::routes::router();
    let routed: BTreeSet<(String, String)> =
        router.routes().map(|(method, path, _)| (method.as_str().to_string(), path.to_string())).collect();
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(undocumented.is_empty() && unrouted.is_empty(), "undocumented: {undocumented:?}\nnot routed: {unrouted:?}");
    // Protected routes declare security; path parameters are declared.
    for (method, path, route) in router.routes() {
        let op = &paths[path][method.as_str().to_lowercase()];
        assert_eq!(op["security"].is_array(), route.role().is_some(), "{method} {path} security: {op}");
        let params = path.matches('{').count();
        let in_path = op["parameters"].as_array().map_or(0, |ps| ps.iter().filter(|p| p["in"] == "path").count());
        assert_eq!(in_path, params, "{method} {path}: {op}");
    }
    server.stop().await;
}

/// POSTs `body_len` bytes with chunked framing (no Content-Length), writing while reading the
/// response, so the server must count the bytes it receives.
async fn post_chunked(addr: std::net::SocketAddr, path: &str, body_len: usize) -> Reply {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-API-Key: {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    );
    let write = tokio::spawn(async move {
        writer.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 64 * 1024];
        let mut sent = 0;
        while sent < body_len {
            writer.write_all(format!("{:x}\r\n", chunk.len()).as_bytes()).await?;
            writer.write_all(&chunk).await?;
            writer.write_all(b"\r\n").await?;
            sent += chunk.len();
        }
        writer.write_all(b"0\r\n\r\n").await
    });
    let mut bytes = Vec::new();
    let read = reader.read_to_end(&mut bytes).await;
    write.abort();
    assert!(read.is_ok() || !bytes.is_empty(), "no response: {read:?}");
    parse_reply(&bytes)
}

#[tokio::test]
async fn bad_input_gets_the_error_envelope() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let body = serde_json::to_vec(&offer("o", 1, 1, 1)).unwrap();

    let reply = api.send("POST", "/api/v1/offers", &[("Content-Type", "text/plain")], Some(&body)).await;
    assert!(reply.expect_error(415, "UNSUPPORTED_MEDIA_TYPE").contains("application/json"));
    api.send("POST", "/api/v1/offers", &[], Some(&body)).await.expect_error(415, "UNSUPPORTED_MEDIA_TYPE");
    let charset =
        api.send("POST", "/api/v1/offers", &[("Content-Type", "application/json; charset=utf-8")], Some(&body));
    charset.await.expect(201);

    // Over 1 MiB: declared up front (rejected before the body is read) ...
    let head = format!(
        "POST /api/v1/offers HTTP/1.1\r\nHost: t\r\nConnection: close\r\nX-API-Key: {ADMIN_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        (1 << 20) + 1
    );
    raw(server.addr, head.as_bytes()).await.expect_error(413, "PAYLOAD_TOO_LARGE");
    // ... or streamed without a length.
    post_chunked(server.addr, "/api/v1/offers", (1 << 20) + (128 << 10)).await.expect_error(413, "PAYLOAD_TOO_LARGE");
    // Exactly at the limit is read (and then fails as JSON, not as size).
    let mut at_limit = vec![b' '; 1 << 20];
    at_limit[0] = b'{';
    api.send("POST", "/api/v1/offers", &[JSON], Some(&at_limit)).await.expect_error(400, "BAD_REQUEST");

    for malformed in [&b"{\"name\": "[..], b"{\"name\": \"x\",}", b"not json", b"", b"null"] {
        let reply = api.send("POST", "/api/v1/offers", &[JSON], Some(malformed)).await;
        reply.expect_error(400, "BAD_REQUEST");
    }
    let typed = api.post("/api/v1/offers", &json!({"name": "o2", "priority": "high"})).await;
    assert!(typed.expect_error(400, "BAD_REQUEST").contains("priority"));

    let unknown = api.get("/api/v1/nothing-here").await;
    unknown.expect_error(404, "NOT_FOUND");
    let wrong_method = api.send("PATCH", "/api/v1/offers", &[], None).await;
    assert_eq!(wrong_method.status, 405, "{}", wrong_method.brief());
    assert_eq!(wrong_method.json()["error"]["status"], 405);
    assert!(wrong_method.header("allow").is_some_and(|a| a.contains("GET") && a.contains("POST")));

    // The envelope's requestId is the header's; a sane client id is echoed.
    let reply = api.send("GET", "/api/v1/offers/nope", &[("X-Request-Id", "client-req-1")], None).await;
    assert_eq!(reply.header("x-request-id"), Some("client-req-1"));
    assert_eq!(reply.expect(404)["error"]["requestId"], "client-req-1");
    let reply = server.client(None).get("/api/v1/offers").await;
    let body = reply.expect(401);
    assert_eq!(body["error"]["requestId"].as_str(), reply.header("x-request-id"));
    server.stop().await;
}

#[tokio::test]
async fn hostile_input_never_takes_the_server_down() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    let data = format!("/api/v1/schemas/{}/data", t.schema);
    let offer_path = format!("/api/v1/offers/{}", t.card);

    let deep = "[".repeat(100_000);
    let deep_closed = format!("{}{}", deep, "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"a\":".repeat(50_000), "}".repeat(50_000));
    let deep_rows = format!("{{\"rows\": [{deep_closed}]}}");
    let deep_rows_field = format!("{{\"rows\": [{{\"customer_id\": \"x\", \"tier\": {deep_closed}}}]}}");
    let deep_other_member = format!("{{\"meta\": {deep_closed}, \"rows\": [{{\"customer_id\": \"x\"}}]}}");
    let deep_outcomes = format!("{{\"outcomes\": [{deep_closed}]}}");
    let zeros = "0".repeat(5000);
    let flow = r#""decisionFlowKey": "cross-sell""#;
    let respond = r#""customerId": "c", "recommendationId": "r", "outcome": "click", "idempotencyKey": "x""#;
    let mut cases: Vec<(&str, String, Vec<u8>)> = vec![
        ("POST", "/api/v1/offers".into(), deep.clone().into_bytes()),
        ("POST", "/api/v1/offers".into(), deep_closed.clone().into_bytes()),
        ("POST", "/api/v1/schemas".into(), deep_object.clone().into_bytes()),
        ("PUT", offer_path.clone(), deep_closed.clone().into_bytes()),
        ("PUT", offer_path.clone(), format!("{{\"category\": {deep_closed}}}").into_bytes()),
        ("POST", "/api/v1/recommend".into(), deep_object.into_bytes()),
        ("POST", "/api/v1/respond".into(), deep_closed.into_bytes()),
        ("POST", "/api/v1/respond/bulk".into(), deep_outcomes.into_bytes()),
        ("POST", data.clone(), deep_rows.into_bytes()),
        ("PUT", data.clone(), deep_rows_field.into_bytes()),
        ("POST", data.clone(), deep_other_member.into_bytes()),
        ("POST", data.clone(), format!("{{\"rows\": [{deep}").into_bytes()),
        ("POST", "/api/v1/offers".into(), br#"{"name": "h", "priority": 1e400}"#.to_vec()),
        ("POST", "/api/v1/offers".into(), br#"{"name": "h", "priority": -1e308, "weight": 1e308}"#.to_vec()),
        ("POST", "/api/v1/offers".into(), format!(r#"{{"name": "h", "priority": 1{zeros}}}"#).into_bytes()),
        (
            "POST",
            "/api/v1/recommend".into(),
            format!(r#"{{"customerId": "c", {flow}, "limit": 18446744073709551616}}"#).into_bytes(),
        ),
        ("POST", "/api/v1/respond".into(), format!(r#"{{{respond}, "rank": 99999999999999999999}}"#).into_bytes()),
        (
            "POST",
            "/api/v1/respond".into(),
            format!(r#"{{{respond}, "rank": -1, "conversionValue": 1e308}}"#).into_bytes(),
        ),
        ("POST", "/api/v1/offers".into(), b"{\"name\": \"\xff\xfe\xfd\", \"priority\": 5}".to_vec()),
        ("POST", "/api/v1/offers".into(), b"{\"name\": \"ok\", \"category\": \"\xc3\x28\"}".to_vec()),
        ("POST", "/api/v1/offers".into(), br#"{"name": "\ud800", "priority": 5}"#.to_vec()),
        ("POST", data.clone(), b"{\"rows\": [{\"customer_id\": \"\xed\xa0\x80\"}]}".to_vec()),
        ("POST", "/api/v1/recommend".into(), [&b"{\"customerId\": \"\xff\", "[..], flow.as_bytes(), b"}"].concat()),
        ("POST", "/api/v1/offers".into(), b"{\"name\": \"nul\x00\"}".to_vec()),
    ];
    let big_customer = json!({"customerId": "x".repeat(100_000), "decisionFlowKey": "cross-sell"});
    cases.push(("POST", "/api/v1/recommend".into(), serde_json::to_vec(&big_customer).unwrap()));
    let huge_attrs = json!({"customerId": "c", "decisionFlowKey": "cross-sell",
        "attributes": (0..20_000).map(|i| (format!("k{i}"), json!(i))).collect::<serde_json::Map<_, _>>()});
    cases.push(("POST", "/api/v1/recommend".into(), serde_json::to_vec(&huge_attrs).unwrap()));

    let mut failures = Vec::new();
    for (method, path, body) in &cases {
        let reply = api.send(method, path, &[JSON], Some(body)).await;
        let preview = String::from_utf8_lossy(&body[..body.len().min(60)]).into_owned();
        if reply.status >= 500 || reply.json().get("error").is_none() && reply.status >= 400 {
            failures.push(format!("{method} {path} {preview}: {}", reply.brief()));
        }
    }
    let deep_rule = format!(
        "rule \"d\" for offer \"Rewards credit card\" {{\n{}true{}\n}}\n",
        "(".repeat(100_000),
        ")".repeat(100_000)
    );
    let not_deep = format!("let x = {}1\n", "-".repeat(100_000));
    for source in [deep_rule, not_deep, "rule \"\u{0}\" {".to_string()] {
        let reply = api.send(
            "PUT",
            "/api/v1/plugins/hostile.rules",
            &[("Content-Type", "text/plain")],
            Some(source.as_bytes()),
        );
        let reply = reply.await;
        if reply.status != 400 {
            failures.push(format!("plugin {}: {}", &source[..40.min(source.len())], reply.brief()));
        }
    }
    let invalid_utf8 = api.send("PUT", "/api/v1/plugins/x.rules", &[], Some(b"rule \xff")).await;
    if invalid_utf8.status != 400 {
        failures.push(format!("plugin invalid UTF-8: {}", invalid_utf8.brief()));
    }
    assert!(failures.is_empty(), "hostile input mishandled:\n{}", failures.join("\n"));

    assert_eq!(server.client(None).get("/healthz").await.expect(200)["status"], "ok");
    assert_eq!(recommend(api, "cust_42").await["count"], 2, "still deciding correctly");
    server.stop().await;
}

#[tokio::test]
async fn tenants_keys_and_roles() {
    let server = TestServer::start().await;
    let admin = &server.admin;
    admin.create("/api/v1/offers", &offer("Default only", 50, 50, 50)).await;

    let acme = admin.create("/api/v1/tenants", &json!({"id": "acme", "name": "Acme"})).await;
    assert_eq!(acme["id"], "acme");
    let acme_key = acme["apiKey"].as_str().expect("apiKey").to_string();
    let acme_api = server.client(Some(&acme_key));
    let me = acme_api.get("/api/v1/whoami").await.expect(200);
    assert_eq!((me["tenantId"].as_str(), me["role"].as_str()), (Some("acme"), Some("admin")));
    assert_eq!(acme_api.get("/api/v1/offers").await.expect(200)["pagination"]["total"], 0, "a new tenant is empty");
    acme_api.create("/api/v1/offers", &offer("Default only", 50, 50, 50)).await;
    assert_eq!(admin.get("/api/v1/offers").await.expect(200)["pagination"]["total"], 1, "tenants are separate");
    assert_eq!(acme_api.with_header("X-Tenant-Id", "acme").get("/api/v1/whoami").await.status, 200);

    admin.post("/api/v1/tenants", &json!({"id": "acme"})).await.expect_error(409, "CONFLICT");
    admin.post("/api/v1/tenants", &json!({"id": "no spaces"})).await.expect_error(400, "BAD_REQUEST");
    admin.post("/api/v1/tenants", &json!({"id": ""})).await.expect_error(400, "BAD_REQUEST");
    let message = acme_api.post("/api/v1/tenants", &json!({"id": "other"})).await.expect_error(403, "FORBIDDEN");
    assert!(message.contains("operator"), "{message}");

    let viewer = acme_api.create("/api/v1/keys", &json!({"name": "dashboards", "role": "viewer"})).await;
    let viewer_key = viewer["apiKey"].as_str().expect("apiKey").to_string();
    assert_ne!(viewer_key, acme_key);
    let viewer_api = server.client(Some(&viewer_key));
    let me = viewer_api.get("/api/v1/whoami").await.expect(200);
    assert_eq!((me["tenantId"].as_str(), me["role"].as_str()), (Some("acme"), Some("viewer")));
    assert_eq!(viewer_api.get("/api/v1/offers").await.expect(200)["pagination"]["total"], 1);
    let message = viewer_api.post("/api/v1/offers", &offer("Nope", 1, 1, 1)).await.expect_error(403, "FORBIDDEN");
    assert!(message.contains("editor"), "{message}");
    viewer_api.post("/api/v1/keys", &json!({"name": "x", "role": "admin"})).await.expect_error(403, "FORBIDDEN");

    let editor = acme_api.create("/api/v1/keys", &json!({"name": "ci", "role": "editor"})).await;
    let editor_api = server.client(editor["apiKey"].as_str());
    editor_api.create("/api/v1/offers", &offer("By editor", 1, 1, 1)).await;
    editor_api.post("/api/v1/keys", &json!({"name": "x", "role": "viewer"})).await.expect_error(403, "FORBIDDEN");
    acme_api.post("/api/v1/keys", &json!({"name": "x", "role": "owner"})).await.expect_error(400, "BAD_REQUEST");
    server.stop().await;
}

/// Validation problems reach the client as data: `error.details.fields` with each path,
/// besides the message that names them.
#[tokio::test]
async fn validation_errors_carry_their_fields_as_data() {
    let server = TestServer::start().await;
    let body = json!({"name": "", "priority": 120});
    let reply = server.admin.post("/api/v1/offers", &body).await;
    let error = reply.expect(400)["error"].clone();
    let fields = error["details"]["fields"].as_array().unwrap_or_else(|| panic!("no fields: {error}"));
    let paths: Vec<&str> = fields.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, ["name", "priority"], "{error}");
    assert!(fields[1]["message"].as_str().unwrap().contains("between 0 and 100"), "{error}");
    server.stop().await;
}
