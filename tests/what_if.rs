//! What-if over real HTTP: dry runs (live, draft, a past version) decide as a real
//! request would and record nothing; a logged decision and a customer's contacts read back.

mod support;

use serde_json::{json, Value};
use support::{tutorial_setup, Client, TestServer};

fn recommend_body(extra: Value) -> Value {
    let mut body = json!({"customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    body
}

async fn dry_run(api: &Client, extra: Value) -> Value {
    let reply = api.post("/api/v1/recommend?dryRun=true&explain=true", &recommend_body(extra)).await;
    let d = reply.expect(200);
    assert_eq!(d["dryRun"], true, "{d}");
    assert!(d.get("recommendationId").is_none() && d.get("interactionId").is_none(), "a dry run has no id: {d}");
    d
}

/// (offer name, score, rank) of each decision.
fn offers(d: &Value) -> Vec<(String, f64, u64)> {
    let list = d["decisions"].as_array().unwrap_or_else(|| panic!("decisions: {d}"));
    list.iter()
        .map(|o| {
            (o["offerName"].as_str().unwrap().to_string(), o["score"].as_f64().unwrap(), o["rank"].as_u64().unwrap())
        })
        .collect()
}

/// How many contacts the customer's policies count (a customer without any is a 404).
async fn contacts(api: &Client, customer: &str) -> u64 {
    let reply = api.get(&format!("/api/v1/customers/{customer}/contacts")).await;
    if reply.status == 404 {
        return 0;
    }
    let got = reply.expect(200);
    assert_eq!(got["customerId"], customer);
    got["count"].as_u64().unwrap()
}

#[tokio::test]
async fn a_dry_run_decides_as_a_real_request_and_records_nothing() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    let cap = json!({"name": "Two a month", "ruleType": "customer_total_cap",
                     "config": {"maxTotal": 2, "periodType": "monthly"}});
    api.create("/api/v1/contact-policies", &cap).await;
    let experiment = format!("/api/v1/experiments/{}/results", t.flow);
    let before = api.get(&experiment).await.expect(200);

    let dry: Vec<Value> = dry_runs(api, 3).await;
    assert_eq!(offers(&dry[0]).len(), 2, "card and savings: {}", dry[0]);
    assert!(dry.iter().all(|d| offers(d) == offers(&dry[0])), "every dry run decides alike");
    assert!(dry[0]["explanation"].is_object(), "explain works in a dry run");
    assert_eq!(contacts(api, "cust_42").await, 0, "a dry run records no contact");
    assert_eq!(api.get(&experiment).await.expect(200), before, "nor a decision in the experiment");

    // The real request gets what the dry runs predicted, and records two contacts.
    let real = api.post("/api/v1/recommend", &recommend_body(json!({}))).await.expect(200);
    assert!(real.get("dryRun").is_none(), "{real}");
    assert_eq!(offers(&real), offers(&dry[0]));
    assert_eq!(contacts(api, "cust_42").await, 2);
    let listed = api.get("/api/v1/customers/cust_42/contacts").await.expect(200);
    let mut shown: Vec<&str> =
        listed["contacts"].as_array().unwrap().iter().map(|c| c["offerId"].as_str().unwrap()).collect();
    let mut expected: Vec<&str> =
        real["decisions"].as_array().unwrap().iter().map(|o| o["offerId"].as_str().unwrap()).collect();
    shown.sort();
    expected.sort();
    assert_eq!(shown, expected, "{listed}");
    assert_eq!(listed["contacts"][0]["channel"], "in_app");
    let id = real["recommendationId"].as_str().unwrap();

    // A dry run reads the contacts as they are: the cap is now reached.
    let capped = dry_run(api, json!({})).await;
    assert_eq!(offers(&capped), [], "the cap holds in a dry run too: {capped}");
    assert_eq!(contacts(api, "cust_42").await, 2);

    // The logged decision reads back as it was made.
    let logged = api.get(&format!("/api/v1/interactions/{id}")).await.expect(200);
    assert_eq!(logged["id"], id);
    assert_eq!(logged["customerId"], "cust_42");
    assert_eq!((&logged["decisionFlowKey"], &logged["decisionFlowVersion"]), (&json!("cross-sell"), &json!(1)));
    assert_eq!(logged["controlGroup"], false);
    let logged_offers: Vec<(String, f64, u64)> = logged["offers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (o["offerName"].as_str().unwrap().to_string(), o["score"].as_f64().unwrap(), o["rank"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(logged_offers, offers(&real));
}

/// `n` dry runs on the live flow, one after the other.
async fn dry_runs(api: &Client, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(dry_run(api, json!({})).await);
    }
    out
}

#[tokio::test]
async fn a_draft_or_a_past_version_is_tried_without_publishing() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    // The draft ranks one offer only; it is not published.
    let path = format!("/api/v1/decision-flows/{}", t.flow);
    let mut flow = api.get(&path).await.expect(200);
    let nodes = flow["draftConfig"]["nodes"].as_array_mut().unwrap();
    nodes.iter_mut().find(|n| n["type"] == "rank").unwrap()["config"]["maxCandidates"] = json!(1);
    api.put(&path, &flow).await.expect(200);

    let draft = dry_run(api, json!({"draft": true})).await;
    assert_eq!(offers(&draft).len(), 1, "{draft}");
    assert_eq!(draft["decisionFlowVersion"], 2, "the draft would be the next version");
    let live = dry_run(api, json!({})).await;
    assert_eq!(offers(&live).len(), 2);
    assert_eq!(live["decisionFlowVersion"], 1);
    assert_eq!(offers(&draft)[0], offers(&live)[0], "the draft keeps the same first offer");

    api.post("/api/v1/decision-flows/publish", &json!({"id": t.flow})).await.expect(200);
    let old = dry_run(api, json!({"flowVersion": 1})).await;
    assert_eq!((offers(&old), &old["decisionFlowVersion"]), (offers(&live), &json!(1)));
    assert_eq!(offers(&dry_run(api, json!({})).await).len(), 1, "v2 is live now");
    assert_eq!(contacts(api, "cust_42").await, 0);
}

/// Each row: (name, query, extra body fields, status, code, text the message names).
const REFUSED: &[(&str, &str, &str, u16, &str, &str)] = &[
    ("draft without dryRun", "", r#"{"draft": true}"#, 400, "BAD_REQUEST", "draft"),
    ("flowVersion without dryRun", "", r#"{"flowVersion": 1}"#, 400, "BAD_REQUEST", "flowVersion"),
    ("both", "?dryRun=true", r#"{"flowVersion": 1, "draft": true}"#, 400, "BAD_REQUEST", "not both"),
    ("a version that does not exist", "?dryRun=true", r#"{"flowVersion": 9}"#, 400, "BAD_REQUEST", "flowVersion"),
    (
        "a flow that does not exist",
        "?dryRun=true",
        r#"{"draft": true, "decisionFlowKey": "nope"}"#,
        404,
        "NOT_FOUND",
        "nope",
    ),
];

#[tokio::test]
async fn dry_runs_that_cannot_be_run_are_refused_by_name() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    for &(name, query, extra, status, code, names) in REFUSED {
        let extra: Value = serde_json::from_str(extra).unwrap_or_else(|e| panic!("row `{name}`: {e}"));
        let reply = api.post(&format!("/api/v1/recommend{query}"), &recommend_body(extra)).await;
        let message = reply.expect_error(status, code);
        assert!(message.contains(names), "row `{name}`: `{message}` should name `{names}`");
    }
    assert_eq!(contacts(api, "cust_42").await, 0);
}

#[tokio::test]
async fn an_unknown_interaction_is_not_found() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let real = api.post("/api/v1/recommend", &recommend_body(json!({}))).await.expect(200);
    let id = real["recommendationId"].as_str().unwrap();
    // Same position, another nonce: not this decision.
    let forged = format!("{}{:08x}", &id[..16], u32::from_str_radix(&id[16..], 16).unwrap() ^ 1);
    for bad in [forged.as_str(), "000000000000000000000000", "not-an-id"] {
        api.get(&format!("/api/v1/interactions/{bad}")).await.expect_error(404, "NOT_FOUND");
    }
}

#[tokio::test]
async fn a_draft_is_simulated_on_the_live_flows_logged_requests() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    for i in 0..40 {
        let mut row = support::tutorial_customer(&format!("c{i}"));
        row["tenureMonths"] = json!(if i % 2 == 0 { 36 } else { 3 });
        api.create(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": [row]})).await;
        let body = json!({"customerId": format!("c{i}"), "channel": "in_app", "decisionFlowKey": "cross-sell",
                          "attributes": {"page": "home"}});
        api.post("/api/v1/recommend", &body).await.expect(200);
    }
    // The draft shows one offer where the live flow shows up to five.
    let path = format!("/api/v1/decision-flows/{}", t.flow);
    let mut flow = api.get(&path).await.expect(200);
    let nodes = flow["draftConfig"]["nodes"].as_array_mut().unwrap();
    nodes.iter_mut().find(|n| n["type"] == "rank").unwrap()["config"]["maxCandidates"] = json!(1);
    api.put(&path, &flow).await.expect(200);

    let before = api.get(&format!("/api/v1/experiments/{}/results", t.flow)).await.expect(200);
    let sim = api.post("/api/v1/decision-flows/simulate", &json!({"id": "cross-sell"})).await.expect(200);
    let requests = sim["requests"].as_u64().unwrap();
    assert!((30..=40).contains(&requests), "40 logged, held-out ones left out: {sim}");
    // Long-tenure customers got card and savings; the draft keeps one offer.
    let changed = sim["changed"].as_u64().unwrap();
    assert!(changed > 0 && changed <= requests, "{sim}");
    let offers = sim["offers"].as_array().unwrap();
    let savings = offers.iter().find(|o| o["offerName"] == "High-yield savings").expect("savings is listed");
    assert!(savings["liveShare"].as_f64().unwrap() > savings["draftShare"].as_f64().unwrap(), "{sim}");
    assert_eq!(sim["removedBy"]["node: rank"], changed, "the draft's rank cuts what changed: {sim}");
    assert!(sim["estimate"].is_null(), "{sim}");
    assert!(sim["estimateNote"].as_str().unwrap().contains("thompson"), "{sim}");
    assert_eq!(api.get(&format!("/api/v1/experiments/{}/results", t.flow)).await.expect(200), before);
    assert_eq!(contacts(api, "c_none").await, 0);

    let limited = api.post("/api/v1/decision-flows/simulate", &json!({"id": t.flow, "limit": 5})).await.expect(200);
    assert!(limited["requests"].as_u64().unwrap() <= 5, "{limited}");
    let later = json!({"id": "cross-sell", "since": "2999-01-01T00:00:00Z"});
    assert_eq!(api.post("/api/v1/decision-flows/simulate", &later).await.expect(200)["requests"], 0);
    for (body, status, names) in [
        (json!({"id": "nope"}), 404, "nope"),
        (json!({"id": "cross-sell", "limit": 0}), 400, "limit"),
        (json!({"id": "cross-sell", "since": "yesterday"}), 400, "since"),
        (json!({"id": "cross-sell", "limt": 5}), 400, "limt"),
    ] {
        let reply = api.post("/api/v1/decision-flows/simulate", &body).await;
        let code = if status == 404 { "NOT_FOUND" } else { "BAD_REQUEST" };
        let message = reply.expect_error(status, code);
        assert!(message.contains(names), "{body}: `{message}` should name `{names}`");
    }
}

/// `arbiter simulate` prints the same answer as a table, and a refusal as an error.
#[tokio::test]
async fn arbiter_simulate_prints_the_simulation_as_a_table() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    for _ in 0..3 {
        api.post("/api/v1/recommend", &recommend_body(json!({}))).await.expect(200);
    }
    let url = format!("http://{}", server.addr);
    let run = |flow: &'static str| {
        let url = url.clone();
        tokio::task::spawn_blocking(move || {
            std::process::Command::new(env!("CARGO_BIN_EXE_arbiter"))
                .args(["simulate", flow, "--server", &url, "--key", support::ADMIN_KEY])
                .output()
                .unwrap()
        })
    };
    let out = run("cross-sell").await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.starts_with("cross-sell: 3 logged requests, 0 changed by the draft"), "{text}");
    assert!(text.contains("Rewards credit card") && text.contains("100.0 %"), "{text}");
    assert!(text.contains("no estimate: ") && text.contains("thompson"), "{text}");
    let refused = run("nope").await.unwrap();
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("404"), "{refused:?}");
}

/// A customer's logged decisions page newest first, and are still listed after a restart
/// (rebuilt from the checkpoint and the log).
#[tokio::test]
async fn a_customers_interactions_page_newest_first_across_a_restart() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let d = api.post("/api/v1/recommend", &recommend_body(json!({"attributes": {"page": "home"}}))).await;
        ids.push(d.expect(200)["recommendationId"].as_str().unwrap().to_string());
    }
    api.post("/api/v1/recommend?dryRun=true", &recommend_body(json!({}))).await.expect(200);
    ids.reverse();
    let listed = |page: Value| {
        page["data"].as_array().unwrap().iter().map(|i| i["id"].as_str().unwrap().to_string()).collect::<Vec<_>>()
    };

    let server = server.restart().await;
    let api = &server.admin;
    let first = api.get("/api/v1/customers/cust_42/interactions?limit=2").await.expect(200);
    assert_eq!(listed(first.clone()), ids[..2], "newest first, the dry run not among them: {first}");
    assert_eq!((&first["pagination"]["hasMore"], &first["pagination"]["total"]), (&json!(true), &json!(3)));
    assert_eq!(first["data"][0]["attributes"]["page"], "home", "{first}");
    let cursor = first["pagination"]["cursor"].as_str().unwrap();
    let second = api.get(&format!("/api/v1/customers/cust_42/interactions?limit=2&cursor={cursor}")).await.expect(200);
    assert_eq!(listed(second.clone()), ids[2..]);
    assert_eq!(second["pagination"]["hasMore"], false);
    let bad = api.get("/api/v1/customers/cust_42/interactions?cursor=nope").await;
    assert!(bad.expect_error(400, "BAD_REQUEST").contains("cursor"));
    api.get("/api/v1/customers/nobody/interactions").await.expect_error(404, "NOT_FOUND");
}
