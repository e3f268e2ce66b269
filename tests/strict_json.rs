//! Unknown JSON fields are refused over real HTTP: a typo (`priorty`) is a 400 that names
//! the field's full JSON path and suggests the field meant, on every request body the API
//! takes, while a PUT that echoes back a GET body (with `id`, `version`, …) still works.

mod support;

use serde_json::{json, Value};
use support::{flow_spec, offer, rule, tutorial_formula, tutorial_setup, Client, TestServer, Tutorial};

/// One case: a named request whose body has one unknown field, and the exact 400 message.
struct Case {
    name: &'static str,
    method: &'static str,
    path: String,
    body: Value,
    message: &'static str,
}

fn case(name: &'static str, method: &'static str, path: impl Into<String>, body: Value, message: &'static str) -> Case {
    Case { name, method, path: path.into(), body, message }
}

/// The tutorial flow with one node's config replaced.
fn flow_with(t: &Tutorial, key: &str, node: usize, config: Value) -> Value {
    let mut spec = flow_spec(key, &t.schema, tutorial_formula());
    spec["draftConfig"]["nodes"][node]["config"] = config;
    spec
}

fn cases(t: &Tutorial) -> Vec<Case> {
    let rank = |config: Value| flow_with(t, "typo-rank", 5, config);
    let mut bad_rule = rule("r", &t.card, "customer.tenureMonths", "gte", json!(6));
    bad_rule["config"] = json!({"attribute": "customer.tenureMonths", "operatr": "gte", "value": 6});
    let mut bad_placement = json!({"name": "web", "placements": [{"name": "hero", "maxSlot": 2}]});
    bad_placement["status"] = json!("active");
    let mut publish_again = json!({"id": t.flow});
    publish_again["note"] = json!("typo");
    let outcome = json!({"customerId": "cust_42", "interactionId": "i", "outcome": "accepted", "idempotencyKey": "k"});
    let mut bad_outcome = outcome.clone();
    bad_outcome["outcom"] = json!("accepted");
    vec![
        case(
            "offer priorty",
            "POST",
            "/api/v1/offers",
            json!({"name": "x", "priorty": 99}),
            "priorty: unknown field (did you mean `priority`?)",
        ),
        case(
            "schema field dataTyp",
            "POST",
            "/api/v1/schemas",
            json!({"name": "s", "fields": [{"name": "a", "isUnique": true}, {"name": "b", "dataTyp": "integer"}]}),
            "fields[1].dataTyp: unknown field (did you mean `dataType`?)",
        ),
        case(
            "rows load",
            "POST",
            format!("/api/v1/schemas/{}/data", t.schema),
            json!({"row": []}),
            "row: unknown field (did you mean `rows`?)",
        ),
        case(
            "schema top level",
            "POST",
            "/api/v1/schemas",
            json!({"name": "s", "feilds": []}),
            "feilds: unknown field (did you mean `fields`?)",
        ),
        case(
            "rule config.operatr",
            "POST",
            "/api/v1/qualification-rules",
            bad_rule,
            "config.operatr: unknown field (did you mean `operator`?)",
        ),
        case(
            "rule top level",
            "POST",
            "/api/v1/qualification-rules",
            json!({"name": "r", "ruleType": "attribute_condition", "scop": "global",
                   "config": {"attribute": "customer.tier", "operator": "exists"}}),
            "scop: unknown field (did you mean `scope`?)",
        ),
        case(
            "channel placement maxSlot",
            "POST",
            "/api/v1/channels",
            bad_placement,
            "placements[0].maxSlot: unknown field (did you mean `maxSlots`?)",
        ),
        case(
            "contact policy config",
            "POST",
            "/api/v1/contact-policies",
            json!({"name": "p", "ruleType": "frequency_cap", "scope": "global", "config": {"maxPerMoth": 1}}),
            "config.maxPerMoth: unknown field (did you mean `maxPerMonth`?)",
        ),
        case(
            "contact policy top level",
            "POST",
            "/api/v1/contact-policies",
            json!({"name": "p", "ruleType": "frequency_cap", "scope": "global", "priorty": 1, "config": {"maxPerDay": 1}}),
            "priorty: unknown field (did you mean `priority`?)",
        ),
        case(
            "flow rank maxCandidate",
            "POST",
            "/api/v1/decision-flows",
            rank(json!({"method": "topN", "maxCandidate": 5})),
            "draftConfig.nodes[5].config.maxCandidate: unknown field (did you mean `maxCandidates`?)",
        ),
        case(
            "flow score formla",
            "POST",
            "/api/v1/decision-flows",
            flow_with(t, "typo-score", 4, json!({"method": "formula", "formla": tutorial_formula()})),
            "draftConfig.nodes[4].config.formla: unknown field (did you mean `formula`?)",
        ),
        case(
            "flow weights",
            "POST",
            "/api/v1/decision-flows",
            flow_with(
                t,
                "typo-weights",
                4,
                json!({"method": "formula", "formula": {"propensityWeight": 0.4,
                "relevanceWeight": 0.2, "impactWeight": 0.3, "emphasisWieght": 0.1}}),
            ),
            "draftConfig.nodes[4].config.formula.emphasisWieght: unknown field (did you mean `emphasisWeight`?)",
        ),
        case(
            "flow enrich source",
            "POST",
            "/api/v1/decision-flows",
            flow_with(t, "typo-enrich", 1, json!({"sources": [{"schemaId": t.schema, "lookupkey": "customer_id"}]})),
            "draftConfig.nodes[1].config.sources[0].lookupkey: unknown field (did you mean `lookupKey`?)",
        ),
        case(
            "flow node",
            "POST",
            "/api/v1/decision-flows",
            {
                let mut f = flow_spec("typo-node", &t.schema, tutorial_formula());
                f["draftConfig"]["nodes"][2]["postion"] = json!(2);
                f
            },
            "draftConfig.nodes[2].postion: unknown field (did you mean `position`?)",
        ),
        case(
            "flow experiment",
            "POST",
            "/api/v1/decision-flows",
            {
                let mut f = flow_spec("typo-exp", &t.schema, tutorial_formula());
                f["draftConfig"]["flowConfig"]["experiment"]["holdoutPercentage"] = json!(5);
                f
            },
            "draftConfig.flowConfig.experiment.holdoutPercentage: unknown field (did you mean `holdoutPercent`?)",
        ),
        case(
            "publish note",
            "POST",
            "/api/v1/decision-flows/publish",
            publish_again,
            "note: unknown field (did you mean `notes`?)",
        ),
        case(
            "rollback versoin",
            "POST",
            "/api/v1/decision-flows/rollback",
            json!({"id": t.flow, "versoin": 1}),
            "versoin: unknown field (did you mean `version`?)",
        ),
        case(
            "recommend customerID",
            "POST",
            "/api/v1/recommend",
            json!({"customerID": "cust_42", "decisionFlowKey": "cross-sell"}),
            "customerID: unknown field (did you mean `customerId`?)",
        ),
        case(
            "respond outcom",
            "POST",
            "/api/v1/respond",
            bad_outcome,
            "outcom: unknown field (did you mean `outcome`?)",
        ),
        case(
            "respond bulk envelope",
            "POST",
            "/api/v1/respond/bulk",
            json!({"outcomes": [outcome], "outcomez": []}),
            "outcomez: unknown field (did you mean `outcomes`?)",
        ),
        case(
            "key roel",
            "POST",
            "/api/v1/keys",
            json!({"name": "k", "roel": "viewer"}),
            "roel: unknown field (did you mean `role`?)",
        ),
        case(
            "tenant nmae",
            "POST",
            "/api/v1/tenants",
            json!({"id": "t2", "nmae": "x"}),
            "nmae: unknown field (did you mean `name`?)",
        ),
        case(
            "PUT offer priorty",
            "PUT",
            format!("/api/v1/offers/{}", t.card),
            json!({"priorty": 1}),
            "priorty: unknown field (did you mean `priority`?)",
        ),
        case(
            "PUT flow node config",
            "PUT",
            format!("/api/v1/decision-flows/{}", t.flow),
            json!({"draftConfig": rank(json!({"maxCandidate": 3}))["draftConfig"]}),
            "draftConfig.nodes[5].config.maxCandidate: unknown field (did you mean `maxCandidates`?)",
        ),
        case(
            "PUT rule config",
            "PUT",
            format!("/api/v1/qualification-rules/{}", t.rules[0]),
            json!({"config": {"attribute": "customer.hasChecking", "operator": "eq", "valeu": true}}),
            "config.valeu: unknown field (did you mean `value`?)",
        ),
    ]
}

/// Checks a row before it is sent, so a mistyped table fails loudly and by name.
fn check_row(c: &Case) {
    assert!(!c.name.is_empty(), "a case without a name: {} {}", c.method, c.path);
    assert!(matches!(c.method, "POST" | "PUT"), "case `{}`: method {} takes no body", c.name, c.method);
    assert!(c.path.starts_with("/api/v1/") && !c.path.contains('{'), "case `{}`: bad path {}", c.name, c.path);
    assert!(c.body.is_object(), "case `{}`: the body must be a JSON object", c.name);
    assert!(c.message.contains(": unknown field"), "case `{}`: expected message {:?} is not one", c.name, c.message);
}

#[tokio::test]
async fn unknown_fields_are_refused_with_their_path_and_a_suggestion() {
    let server = TestServer::start().await;
    let t = tutorial_setup(&server.admin).await;
    let mut failures = Vec::new();
    for c in cases(&t) {
        check_row(&c);
        let reply = server.admin.json(c.method, &c.path, &c.body).await;
        let body: Value = serde_json::from_slice(&reply.body).unwrap_or_default();
        let message = body["error"]["message"].as_str().unwrap_or_default();
        if reply.status != 400 || body["error"]["code"] != "BAD_REQUEST" || message != c.message {
            failures.push(format!("case `{}`: expected 400 {:?}, got {}", c.name, c.message, reply.brief()));
        }
    }
    assert!(failures.is_empty(), "{} case(s) failed:\n{}", failures.len(), failures.join("\n"));
    server.stop().await;
}

#[tokio::test]
async fn a_bulk_item_with_an_unknown_field_fails_by_itself() {
    let server = TestServer::start().await;
    tutorial_setup(&server.admin).await;
    let item = json!({"customerId": "cust_42", "interactionId": "nope", "outcome": "accepted",
                      "idempotencyKey": "b1", "offerID": "x"});
    let reply = server.admin.post("/api/v1/respond/bulk", &json!({"outcomes": [item]})).await;
    let body = reply.expect(422);
    assert_eq!(body["errors"][0]["error"], "outcomes[0].offerID: unknown field (did you mean `offerId`?)", "{body}");
    server.stop().await;
}

#[tokio::test]
async fn the_platforms_optional_fields_are_accepted() {
    let server = TestServer::start().await;
    tutorial_setup(&server.admin).await;
    let request = json!({"customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell",
        "channelId": "ch", "placements": [{"placementId": "hero"}], "sessionId": "s", "segments": ["vip"],
        "locale": "en-GB", "currency": "GBP", "excludeOffers": [], "excludeCreatives": [], "debug": false,
        "decisionFlowId": "f"});
    let decision = server.admin.post("/api/v1/recommend", &request).await.expect(200);
    let interaction = decision["interactionId"].as_str().expect("interaction id");
    let offer_id = decision["decisions"][0]["offerId"].as_str().map(str::to_string);
    let respond = json!({"customerId": "cust_42", "interactionId": interaction, "offerId": offer_id,
        "outcome": "click", "idempotencyKey": "opt-1", "creativeId": "c", "treatmentId": "t", "direction": "inbound",
        "channelId": "ch", "placementId": "p", "outcomeDetails": {"a": 1}, "attributes": {"b": 2}});
    let reply = server.admin.post("/api/v1/respond", &respond).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    server.stop().await;
}

/// PUT with a GET body sent back whole (ids, version, timestamps, a flow's status and
/// versions) succeeds for every kind of entity, and changes what was edited.
#[tokio::test]
async fn put_accepts_an_echoed_get_body() {
    let server = TestServer::start().await;
    let api: &Client = &server.admin;
    let t = tutorial_setup(api).await;
    let policy = api
        .create(
            "/api/v1/contact-policies",
            &json!({"name": "p", "ruleType": "frequency_cap", "scope": "global", "config": {"maxPerDay": 3}}),
        )
        .await;
    let policy = policy["id"].as_str().expect("policy id").to_string();
    let extra = api.create("/api/v1/offers", &offer("Extra", 10, 10, 10)).await;
    let extra = extra["id"].as_str().expect("offer id").to_string();
    let rows: [(&str, String, &str, Value); 6] = [
        ("offer", format!("/api/v1/offers/{extra}"), "description", json!("edited")),
        ("schema", format!("/api/v1/schemas/{}", t.schema), "description", json!("edited")),
        ("rule", format!("/api/v1/qualification-rules/{}", t.rules[0]), "description", json!("edited")),
        ("channel", format!("/api/v1/channels/{}", t.channels[0]), "description", json!("edited")),
        ("policy", format!("/api/v1/contact-policies/{policy}"), "description", json!("edited")),
        ("flow", format!("/api/v1/decision-flows/{}", t.flow), "description", json!("edited")),
    ];
    for (name, path, field, value) in rows {
        let mut current = api.get(&path).await.expect(200);
        assert!(current["id"].is_string() && current["version"].is_number(), "row `{name}`: GET {path}: {current}");
        current[field] = value.clone();
        let reply = api.put(&path, &current).await;
        assert_eq!(reply.status, 200, "row `{name}`: PUT {path} with the GET body: {}", reply.text());
        assert_eq!(reply.json()[field], value, "row `{name}`: the edit is kept");
    }
    server.stop().await;
}
