//! The auth and tenant matrix over real HTTP, driven by the route table itself: every route
//! that needs a role is called with no key, a wrong key, a mismatched `X-Tenant-Id`, keys
//! of too small a role, and another tenant's key asking for this tenant's resource ids.
//! Each test collects every failing (route, case) pair and reports them in one assertion.

mod support;

use arbiter::api::routes::{table, Route};
use arbiter::http::auth::Role;
use serde_json::{json, Value};
use support::*;

const JSON: (&str, &str) = ("Content-Type", "application/json");
const TENANT_B: &str = "tenant-b";
const PLUGIN: &str = "cards.rules";
const PLUGIN_SOURCE: &str = "rule \"Card — no card yet\" for offer \"Rewards credit card\" {\n    \
                             customer.hasCreditCard == false\n}\n";

/// Tenant A (the default tenant, with the tutorial's entities, a rule file and a
/// recommendation) and tenant B (empty, with its own admin key).
struct Fixture {
    server: TestServer,
    a: Tutorial,
    recommendation: Value,
    b_key: String,
    policy: String,
    journey: String,
}

impl Fixture {
    async fn new() -> Fixture {
        let server = TestServer::start().await;
        let api = &server.admin;
        let a = tutorial_setup(api).await;
        let put = api.send("PUT", &format!("/api/v1/plugins/{PLUGIN}"), &[], Some(PLUGIN_SOURCE.as_bytes())).await;
        put.expect(200);
        let policy = json!({"name": "Weekly budget", "ruleType": "customer_total_cap",
                            "config": {"maxTotal": 50, "periodType": "weekly"}});
        let policy = api.create("/api/v1/contact-policies", &policy).await["id"].as_str().expect("id").to_string();
        let journey = api.create("/api/v1/journeys", &journey_spec()).await["id"].as_str().expect("id").to_string();
        let recommendation = recommend(api, "cust_42").await;
        let b = api.create("/api/v1/tenants", &json!({"id": TENANT_B})).await;
        let b_key = b["apiKey"].as_str().expect("apiKey").to_string();
        Fixture { server, a, recommendation, b_key, policy, journey }
    }

    /// The pattern with `{id}` replaced by tenant A's entity of the route's kind, `{name}` by
    /// A's rule file, and `?id=` added for the versions route.
    fn path(&self, pattern: &str) -> String {
        let id = match pattern {
            p if p.starts_with("/api/v1/schemas/") => self.a.schema.as_str(),
            p if p.starts_with("/api/v1/offers/") => self.a.card.as_str(),
            p if p.starts_with("/api/v1/qualification-rules/") => self.a.rules[0].as_str(),
            p if p.starts_with("/api/v1/channels/") => self.a.channels[0].as_str(),
            p if p.starts_with("/api/v1/decision-flows/") => self.a.flow.as_str(),
            p if p.starts_with("/api/v1/contact-policies/") => self.policy.as_str(),
            p if p.starts_with("/api/v1/journeys/") => self.journey.as_str(),
            p if p.starts_with("/api/v1/algorithm-models/") => self.a.flow.as_str(),
            p if p.starts_with("/api/v1/experiments/") => "cross-sell",
            p if p.starts_with("/api/v1/customers/") => "cust_42",
            p if p.starts_with("/api/v1/interactions/") => self.recommendation["recommendationId"].as_str().unwrap(),
            _ => "dummy-id",
        };
        let path = pattern.replace("{id}", id).replace("{name}", PLUGIN).replace("{version}", "1");
        if pattern == "/api/v1/decision-flows/versions" {
            format!("{path}?id={}", self.a.flow)
        } else if pattern.ends_with("/uplift") {
            format!("{path}?customerId=cust_42")
        } else {
            path
        }
    }

    /// A body that would be valid for the route if it ran against tenant A's ids.
    fn body(&self, route: Route) -> Option<Vec<u8>> {
        let value = match route.operation_id().as_str() {
            "CreateTenant" => json!({"id": "never-created"}),
            "CreateKey" => json!({"name": "never-created", "role": "viewer"}),
            "CreateSchema" => {
                json!({"name": "never", "fields": [{"name": "k", "dataType": "varchar", "isUnique": true}]})
            }
            "UpdateSchema" => json!({"displayName": "stolen"}),
            "InsertRows" | "UpsertRows" => json!({"rows": [tutorial_customer("cust_42")]}),
            "CreateOffer" => offer("Never", 1, 1, 1),
            "CreatePolicy" => json!({"name": "Never", "ruleType": "cooldown", "scope": "global",
                                          "config": {"cooldownHours": 1}}),
            "CreateJourney" => journey_spec(),
            "EnrollJourney" | "TestJourney" => json!({"customerId": "cust_42"}),
            "UpdateOffer" | "UpdateRule" | "UpdateChannel" | "UpdateFlow" | "UpdatePolicy" | "UpdateJourney" => {
                json!({"name": "stolen"})
            }
            "CreateRule" => rule("Never", &self.a.card, "customer.tenureMonths", "gte", json!(1)),
            "CreateChannel" => json!({"name": "never"}),
            "CreateFlow" => flow_spec("never", &self.a.schema, tutorial_formula()),
            "Publish" => json!({"id": self.a.flow}),
            "Rollback" => json!({"id": self.a.flow, "version": 1}),
            "PutPlugin" => return Some(b"// stolen\n".to_vec()),
            "Recommend" => json!({"customerId": "cust_42", "decisionFlowKey": "cross-sell"}),
            "Respond" => {
                json!({"customerId": "cust_42", "recommendationId": self.recommendation["recommendationId"],
                                     "rank": 1, "outcome": "click", "idempotencyKey": "cross-tenant"})
            }
            "RespondBulk" => json!({"outcomes": [{"customerId": "cust_42",
                "recommendationId": self.recommendation["recommendationId"], "rank": 1, "outcome": "click",
                "idempotencyKey": "cross-tenant-bulk"}]}),
            _ => return None,
        };
        Some(serde_json::to_vec(&value).expect("serialise"))
    }

    async fn call(&self, client: &Client, method: &str, route: Route, path: &str) -> Reply {
        match self.body(route) {
            Some(body) => client.send(method, path, &[JSON], Some(&body)).await,
            None => client.send(method, path, &[], None).await,
        }
    }

    /// Tenant A's entities are all still there, unchanged by the calls above.
    async fn assert_a_intact(&self) {
        let api = &self.server.admin;
        let checks = [
            (format!("/api/v1/schemas/{}", self.a.schema), "displayName", json!("Customer")),
            (format!("/api/v1/offers/{}", self.a.card), "name", json!("Rewards credit card")),
            (format!("/api/v1/qualification-rules/{}", self.a.rules[0]), "name", json!("Savings — has checking")),
            (format!("/api/v1/channels/{}", self.a.channels[0]), "name", json!("email")),
            (format!("/api/v1/decision-flows/{}", self.a.flow), "name", json!("Flow cross-sell")),
            (format!("/api/v1/plugins/{PLUGIN}"), "source", json!(PLUGIN_SOURCE)),
            (format!("/api/v1/journeys/{}", self.journey), "name", json!("Card follow-up")),
        ];
        for (path, field, expected) in checks {
            assert_eq!(api.get(&path).await.expect(200)[field], expected, "tenant A's {path} changed");
        }
        let rows = api.get(&format!("/api/v1/schemas/{}/data", self.a.schema)).await.expect(200);
        assert_eq!(rows["total"], 1, "tenant A's rows changed: {rows}");
        let versions = api.get(&format!("/api/v1/decision-flows/versions?id={}", self.a.flow)).await.expect(200);
        assert_eq!(versions["versions"].as_array().map(Vec::len), Some(1), "tenant A's flow was published again");
        assert_eq!(recommend(api, "cust_42").await["count"], 2);
    }
}

/// A draft journey of tenant A that names its card offer and channels.
fn journey_spec() -> Value {
    json!({"name": "Card follow-up", "definition": {
        "nodes": [{"id": "in", "type": "entry_trigger"},
                  {"id": "lead", "type": "nba_decision", "config": {"decisionFlowKey": "cross-sell", "channel": "email"}},
                  {"id": "act", "type": "channel_action", "config": {"channel": "branch", "offerId": "Rewards credit card"}},
                  {"id": "out", "type": "exit"}],
        "edges": [{"from": "in", "to": "lead"}, {"from": "lead", "to": "act"}, {"from": "act", "to": "out"}]}})
}

/// The routes that need a role, with their method.
fn protected() -> impl Iterator<Item = (&'static str, &'static str, Route)> {
    table().iter().filter(|r| r.route.role().is_some()).map(|r| (r.method, r.path, r.route))
}

/// The route at `method` and `pattern` in the route table.
fn route(method: &str, pattern: &str) -> Route {
    let row = table().iter().find(|r| r.method == method && r.path == pattern);
    row.unwrap_or_else(|| panic!("no route {method} {pattern}")).route
}

/// Checks one reply against an expected status and error code; `None` when it matches.
fn mismatch(reply: &Reply, status: u16, code: &str) -> Option<String> {
    let body: Value = serde_json::from_slice(&reply.body).unwrap_or(Value::Null);
    let ok = reply.status == status && body["error"]["code"] == code && body["error"]["status"] == status;
    (!ok).then(|| format!("expected {status} {code}, got {}", reply.brief()))
}

fn report(failures: &[String]) {
    assert!(failures.is_empty(), "{} failing (route, case) pairs:\n{}", failures.len(), failures.join("\n"));
}

#[tokio::test]
async fn every_protected_route_rejects_missing_wrong_and_mismatched_credentials() {
    let f = Fixture::new().await;
    let anonymous = f.server.client(None);
    let wrong = f.server.client(Some("arb_0000000000000000000000000000000000000000000000000000000000000000"));
    let wrong_bearer = f.server.client(None).with_header("Authorization", "Bearer not-a-key");
    let malformed = f.server.client(None).with_header("Authorization", "Basic dXNlcjpwYXNz");
    let other_tenant = f.server.admin.with_header("X-Tenant-Id", TENANT_B);
    let unknown_tenant = f.server.admin.with_header("X-Tenant-Id", "no-such-tenant");
    let cases: [(&str, &Client, u16, &str); 6] = [
        ("no key", &anonymous, 401, "UNAUTHORIZED"),
        ("wrong key", &wrong, 401, "UNAUTHORIZED"),
        ("wrong bearer key", &wrong_bearer, 401, "UNAUTHORIZED"),
        ("non-bearer Authorization", &malformed, 401, "UNAUTHORIZED"),
        ("X-Tenant-Id of another tenant", &other_tenant, 403, "FORBIDDEN"),
        ("X-Tenant-Id of an unknown tenant", &unknown_tenant, 403, "FORBIDDEN"),
    ];
    let mut failures = Vec::new();
    let mut rows = 0;
    for (method, pattern, route) in protected() {
        let path = f.path(pattern);
        for (case, client, status, code) in &cases {
            let reply = f.call(client, method, route, &path).await;
            if let Some(why) = mismatch(&reply, *status, code) {
                failures.push(format!("{method} {pattern} [{case}]: {why}"));
            }
            if *status == 401 && reply.header("www-authenticate").is_none() {
                failures.push(format!("{method} {pattern} [{case}]: 401 without WWW-Authenticate"));
            }
            rows += 1;
        }
    }
    assert!(rows >= 40 * cases.len(), "the matrix ran only {rows} rows");
    report(&failures);
    f.assert_a_intact().await;
    f.server.stop().await;
}

#[tokio::test]
async fn roles_below_the_route_role_are_forbidden() {
    let f = Fixture::new().await;
    let api = &f.server.admin;
    let viewer = api.create("/api/v1/keys", &json!({"name": "viewer", "role": "viewer"})).await;
    let editor = api.create("/api/v1/keys", &json!({"name": "editor", "role": "editor"})).await;
    let keys = [
        (Role::Viewer, f.server.client(viewer["apiKey"].as_str())),
        (Role::Editor, f.server.client(editor["apiKey"].as_str())),
    ];
    let mut failures = Vec::new();
    for (method, pattern, route) in protected() {
        let needed = route.role().expect("protected");
        let path = f.path(pattern);
        for (role, client) in &keys {
            if *role >= needed {
                continue;
            }
            let reply = f.call(client, method, route, &path).await;
            if let Some(why) = mismatch(&reply, 403, "FORBIDDEN") {
                failures.push(format!("{method} {pattern} [{} key]: {why}", role.as_str()));
            }
        }
    }
    report(&failures);
    f.assert_a_intact().await;
    f.server.stop().await;
}

#[tokio::test]
async fn another_tenants_key_never_reaches_this_tenants_resources() {
    let f = Fixture::new().await;
    let b = f.server.client(Some(&f.b_key));
    let secrets =
        ["Rewards credit card", "cust_42", "Savings — has checking", "Flow cross-sell", "customer.hasCreditCard"];
    let mut failures = Vec::new();
    let mut rows = 0;
    for (method, pattern, route) in protected() {
        // Routes that address one of A's resources: a path id or name, `?id=`, or a body id.
        let by_id = pattern.contains('{')
            || matches!(route, Route::Versions | Route::Publish | Route::Rollback | Route::Respond);
        // PUT of a rule file by name creates B's own file, and checking one checks B's text
        // against B's tenant: nothing of A's is addressed.
        if !by_id || matches!(route, Route::PutPlugin | Route::CheckPlugin) {
            continue;
        }
        let reply = f.call(&b, method, route, &f.path(pattern)).await;
        rows += 1;
        if let Some(why) = mismatch(&reply, 404, "NOT_FOUND") {
            failures.push(format!("{method} {pattern} [tenant B, A's id]: {why}"));
        }
        let text = reply.text();
        if let Some(secret) = secrets.iter().find(|s| text.contains(*s)) {
            failures.push(format!("{method} {pattern} [tenant B, A's id]: reply shows A's `{secret}`: {text}"));
        }
    }
    assert!(rows >= 20, "only {rows} by-id routes checked");

    // B's lists are empty; its bulk respond with A's recommendation records nothing.
    for list in ["schemas", "offers", "qualification-rules", "channels", "decision-flows", "journeys"] {
        let reply = b.get(&format!("/api/v1/{list}")).await;
        if reply.status != 200 || reply.json()["pagination"]["total"] != 0 {
            failures.push(format!("GET /api/v1/{list} [tenant B]: expected an empty list, got {}", reply.brief()));
        }
    }
    let plugins = b.get("/api/v1/plugins").await;
    if plugins.status != 200 || plugins.text().contains(PLUGIN) {
        failures.push(format!("GET /api/v1/plugins [tenant B]: {}", plugins.brief()));
    }
    let bulk = f.call(&b, "POST", Route::RespondBulk, "/api/v1/respond/bulk").await;
    if bulk.status != 422 {
        failures.push(format!(
            "POST /api/v1/respond/bulk [tenant B, A's recommendation]: expected 422, got {}",
            bulk.brief()
        ));
    }
    let recommend = f.call(&b, "POST", Route::Recommend, "/api/v1/recommend").await;
    if let Some(why) = mismatch(&recommend, 404, "NOT_FOUND") {
        failures.push(format!("POST /api/v1/recommend [tenant B, A's flow key]: {why}"));
    }
    report(&failures);
    f.assert_a_intact().await;
    // A's own respond still works: B's attempts did not consume A's recommendation or keys.
    let body = json!({"customerId": "cust_42", "recommendationId": f.recommendation["recommendationId"], "rank": 1,
                      "outcome": "click", "idempotencyKey": "cross-tenant"});
    let mine = f.server.admin.post("/api/v1/respond", &body).await.expect(201);
    assert_eq!(mine["duplicate"], false, "tenant B's attempt was recorded under A's idempotency key: {mine}");
    f.server.stop().await;
}

#[tokio::test]
async fn bearer_token_works_like_x_api_key() {
    let f = Fixture::new().await;
    let bearer = f.server.client(None).with_header("Authorization", &format!("Bearer {ADMIN_KEY}"));
    let lower = f.server.client(None).with_header("Authorization", &format!("bearer   {ADMIN_KEY} "));
    let mut failures = Vec::new();
    for (method, pattern, route) in protected().filter(|(m, _, _)| *m == "GET") {
        let path = f.path(pattern);
        let expected = f.server.admin.get(&path).await;
        for (case, client) in [("Bearer", &bearer), ("lower-case bearer", &lower)] {
            let reply = f.call(client, method, route, &path).await;
            let same = reply.status == expected.status
                // whoami names the key and metrics count the requests themselves: compare status only.
                && (reply.status != 200 || pattern.ends_with("/whoami") || pattern == "/metrics" || reply.json() == expected.json());
            if !same || reply.status != 200 {
                failures.push(format!(
                    "{method} {pattern} [{case}]: X-API-Key gave {}, got {}",
                    expected.status,
                    reply.brief()
                ));
            }
        }
    }
    let created = bearer.post("/api/v1/offers", &offer("Via bearer", 10, 10, 10)).await;
    if created.status != 201 {
        failures.push(format!("POST /api/v1/offers [Bearer]: {}", created.brief()));
    }
    let me = bearer.get("/api/v1/whoami").await.expect(200);
    assert_eq!((me["tenantId"].as_str(), me["role"].as_str()), (Some(TENANT), Some("admin")));
    let b_bearer = f.server.client(None).with_header("Authorization", &format!("Bearer {}", f.b_key));
    assert_eq!(b_bearer.get("/api/v1/whoami").await.expect(200)["tenantId"], TENANT_B);
    // Both headers with different keys are refused rather than guessed between.
    let both = f.server.admin.with_header("Authorization", &format!("Bearer {}", f.b_key));
    if let Some(why) = mismatch(&both.get("/api/v1/whoami").await, 401, "UNAUTHORIZED") {
        failures.push(format!("GET /api/v1/whoami [X-API-Key and a different Bearer]: {why}"));
    }
    report(&failures);
    f.server.stop().await;
}

#[tokio::test]
async fn roles_follow_the_platform_notes() {
    let f = Fixture::new().await;
    let api = &f.server.admin;
    let viewer = api.create("/api/v1/keys", &json!({"name": "viewer", "role": "viewer"})).await;
    let editor = api.create("/api/v1/keys", &json!({"name": "editor", "role": "editor"})).await;
    let viewer = f.server.client(viewer["apiKey"].as_str());
    let editor = f.server.client(editor["apiKey"].as_str());
    let cases = [
        (&editor, "editor", "POST", "/api/v1/qualification-rules"),
        (&editor, "editor", "PUT", "/api/v1/qualification-rules/{id}"),
        (&editor, "editor", "DELETE", "/api/v1/qualification-rules/{id}"),
        (&editor, "editor", "POST", "/api/v1/decision-flows/rollback"),
        (&viewer, "viewer", "GET", "/api/v1/decision-flows/versions"),
        (&editor, "editor", "POST", "/api/v1/contact-policies"),
        (&editor, "editor", "DELETE", "/api/v1/contact-policies/{id}"),
        (&viewer, "viewer", "POST", "/api/v1/algorithm-models/{id}/train"),
    ];
    let mut failures = Vec::new();
    for (client, role, method, pattern) in cases {
        let reply = f.call(client, method, route(method, pattern), &f.path(pattern)).await;
        if let Some(why) = mismatch(&reply, 403, "FORBIDDEN") {
            failures.push(format!("{method} {pattern} [{role} key]: {why}"));
        }
    }
    report(&failures);
    f.server.stop().await;
}
