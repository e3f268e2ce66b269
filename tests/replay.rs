//! Decision receipts and replays over real HTTP: a logged decision, decided again from
//! its receipt, is identical bit for bit — while responses move the counters, rows are
//! reloaded, policies count contacts, uplift models are trained, the catalog changes
//! and the flow is republished, and the server restarts in between.

mod support;

use serde_json::{json, Value};
use support::{tutorial_customer, tutorial_setup, Client, TestServer, Tutorial};

/// A small deterministic generator (the test picks customers and decisions from it).
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

const CUSTOMERS: usize = 400;

/// Customer rows with tenures and balances spread out; `shift` moves them (a reload).
async fn load_rows(api: &Client, t: &Tutorial, shift: usize) {
    let rows: Vec<Value> = (0..CUSTOMERS)
        .map(|i| {
            let mut row = tutorial_customer(&format!("r{i:03}"));
            row["tenureMonths"] = json!(3 + (i * 7 + shift) % 110);
            row["avgMonthlyBalance"] = json!(20_000 + ((i * 131 + shift * 17) % 60) * 1000);
            row["hasSavings"] = json!((i + shift).is_multiple_of(4));
            row
        })
        .collect();
    api.post(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": rows})).await.expect(201);
}

/// `n` decisions for random customers (some without a row), on two channels, with a
/// request attribute the rules read, in 8 concurrent streams; about a third get a
/// response (some of them concurrent with other decisions for the customer). Returns
/// the decisions' ids.
async fn traffic(api: &Client, t: &Tutorial, n: usize, seed: u64) -> Vec<String> {
    let mut streams = Vec::new();
    for s in 0..8u64 {
        let (api, card) = (api.clone(), t.card.clone());
        streams.push(tokio::spawn(async move {
            let mut rng = Rng(seed * 1_000 + s + 1);
            let mut ids = Vec::new();
            for i in 0..n / 8 {
                let customer = format!("r{:03}", rng.below(CUSTOMERS as u64 + 20));
                let channel = if rng.below(3) == 0 { "email" } else { "in_app" };
                let mut body = json!({"customerId": customer, "channel": channel, "decisionFlowKey": "cross-sell",
                                      "attributes": {"visits": rng.below(4)}});
                if rng.below(5) == 0 {
                    body["segments"] = json!(["vulnerable"]);
                }
                let explain = if rng.below(10) == 0 { "?explain=true" } else { "" };
                let d = api.post(&format!("/api/v1/recommend{explain}"), &body).await.expect(200);
                let id = d["recommendationId"].as_str().expect("a logged decision has an id").to_string();
                let shown: Vec<String> = d["decisions"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|o| o["offerId"].as_str().unwrap().to_string())
                    .collect();
                let control = d["controlGroup"] == true;
                if rng.below(3) == 0 && (control || !shown.is_empty()) {
                    // A held-out customer converts (or not) on what it would have been shown.
                    let offer =
                        if control { card.clone() } else { shown[rng.below(shown.len() as u64) as usize].clone() };
                    let outcome = ["convert", "click", "dismiss"][rng.below(3) as usize];
                    let respond = json!({"customerId": customer, "recommendationId": id, "offerId": offer,
                        "outcome": outcome, "conversionValue": 90, "idempotencyKey": format!("{seed}-{s}-{i}")});
                    let status = api.post("/api/v1/respond", &respond).await.status;
                    assert!(status == 201 || (control && status == 400), "respond: {status}");
                }
                ids.push(id);
            }
            ids
        }));
    }
    let mut ids = Vec::new();
    for s in streams {
        ids.extend(s.await.expect("a traffic stream does not panic"));
    }
    ids
}

async fn replay(api: &Client, id: &str) -> Value {
    api.post(&format!("/api/v1/interactions/{id}/replay"), &json!({})).await.expect(200)
}

/// The tutorial with contact policies of every kind that reads history, a rule on a
/// request attribute, and the flow's score exploring (Thompson) where uplift is on.
async fn setup(api: &Client) -> Tutorial {
    let t = tutorial_setup(api).await;
    for policy in [
        json!({"name": "Card: 3 a week", "ruleType": "frequency_cap", "scopeId": t.card,
               "config": {"maxPerWeek": 3}}),
        json!({"name": "Savings: cool down", "ruleType": "cooldown", "scopeId": t.savings,
               "config": {"cooldownHours": 1}}),
        json!({"name": "Not after a dismissal", "ruleType": "outcome_based", "scopeId": t.card,
               "config": {"outcomeType": "dismiss", "lookbackDays": 30}}),
        json!({"name": "Savings: 1500 a day", "ruleType": "budget_exhausted", "scopeId": t.savings,
               "config": {"maxPerDay": 1500}}),
        json!({"name": "No vulnerable customers", "ruleType": "segment_exclusion",
               "config": {"excludeSegments": ["vulnerable"]}}),
    ] {
        api.create("/api/v1/contact-policies", &policy).await;
    }
    let visits = support::rule("Wealth — visited", &t.wealth, "attributes.visits", "gte", json!(1));
    api.create("/api/v1/qualification-rules", &visits).await;
    republish(api, &t, |_| {}).await;
    load_rows(api, &t, 0).await;
    t
}

/// Changes the flow's draft with `edit` and publishes it (a new version).
async fn republish(api: &Client, t: &Tutorial, edit: impl FnOnce(&mut Value)) {
    let mut spec = support::flow_spec("cross-sell", &t.schema, support::tutorial_formula());
    edit(&mut spec["draftConfig"]);
    api.put(&format!("/api/v1/decision-flows/{}", t.flow), &json!({"draftConfig": spec["draftConfig"]}))
        .await
        .expect(200);
    api.post("/api/v1/decision-flows/publish", &json!({"id": t.flow})).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_random_logged_decisions_replay_identically() {
    let server = TestServer::start().await;
    let api = server.admin.clone();
    let t = setup(&api).await;

    let mut ids = traffic(&api, &t, 2_400, 1).await;
    // Models trained on the log serve the next decisions; exploration turns on.
    api.post("/api/v1/algorithm-models/cross-sell/train", &json!({})).await.expect(200);
    republish(&api, &t, |draft| draft["nodes"][4]["config"]["exploration"] = json!("thompson")).await;
    ids.extend(traffic(&api, &t, 2_400, 2).await);
    // The catalog changes under the flow (another version), and the rows are reloaded.
    api.put(&format!("/api/v1/offers/{}", t.card), &json!({"priority": 60})).await.expect(200);
    republish(&api, &t, |draft| {
        let score = &mut draft["nodes"][4]["config"];
        score["exploration"] = json!("thompson");
        (score["formula"]["impactWeight"], score["formula"]["emphasisWeight"]) = (json!(0.45), json!(0.0));
    })
    .await;
    load_rows(&api, &t, 5).await;
    api.post("/api/v1/algorithm-models/cross-sell/train", &json!({})).await.expect(200);
    ids.extend(traffic(&api, &t, 2_400, 3).await);

    let server = server.restart().await;
    let api = server.admin.clone();
    load_rows(&api, &t, 9).await;
    ids.extend(traffic(&api, &t, 3_200, 4).await);
    assert!(ids.len() >= 10_400, "{} decisions logged", ids.len());

    // 10,000 of them at random, replayed in 8 concurrent streams.
    let mut rng = Rng(99);
    for i in (1..ids.len()).rev() {
        ids.swap(i, rng.below(i as u64 + 1) as usize);
    }
    ids.truncate(10_000);
    let mut streams = Vec::new();
    for chunk in ids.chunks(1_250).map(<[String]>::to_vec) {
        let api = api.clone();
        streams.push(tokio::spawn(async move {
            let mut differing = Vec::new();
            let mut versions = std::collections::BTreeSet::new();
            for id in chunk {
                let r = replay(&api, &id).await;
                versions.insert(r["original"]["decisionFlowVersion"].as_u64().unwrap());
                if r["identical"] != true {
                    differing.push(r);
                }
            }
            (differing, versions)
        }));
    }
    let (mut differing, mut versions) = (Vec::new(), std::collections::BTreeSet::new());
    for s in streams {
        let (d, v) = s.await.expect("a replay stream does not panic");
        differing.extend(d);
        versions.extend(v);
    }
    let first: Vec<&Value> = differing.iter().map(|r| &r["differences"]).take(3).collect();
    assert!(differing.is_empty(), "{} of 10,000 replays differ; the first: {first:?}", differing.len());
    assert_eq!(versions, [2, 3, 4].into(), "decisions of every published version were replayed");
    // Some of them were served trained models, some were not; the receipts say which.
    let mut served = 0;
    for id in ids.iter().take(200) {
        let receipt = api.get(&format!("/api/v1/interactions/{id}")).await.expect(200);
        served += usize::from(receipt["reproduce"]["models"].is_string());
    }
    assert!((1..200).contains(&served), "{served} of 200 receipts name models");
}

#[tokio::test]
async fn a_receipt_says_what_reproducing_the_decision_needs() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = setup(api).await;
    // A customer outside the holdout who is shown the card (found by dry runs).
    let body = |i: usize| {
        json!({"customerId": format!("r{i:03}"), "channel": "in_app", "decisionFlowKey": "cross-sell",
               "attributes": {"visits": 2, "unread": "not read by any rule"}})
    };
    let shows_card = |d: &Value| d["decisions"].as_array().unwrap().iter().any(|o| o["offerId"] == t.card.as_str());
    let mut i = 0;
    while !shows_card(&api.post("/api/v1/recommend?dryRun=true", &body(i)).await.expect(200)) {
        i += 1;
        assert!(i < CUSTOMERS, "some customer is shown the card");
    }
    let customer = format!("r{i:03}");
    let body = body(i);
    let d = api.post("/api/v1/recommend", &body).await.expect(200);
    let id = d["recommendationId"].as_str().unwrap();
    let receipt = api.get(&format!("/api/v1/interactions/{id}")).await.expect(200);
    let r = &receipt["reproduce"];
    assert_eq!(r["inputs"].as_str().map(str::len), Some(32), "{receipt}");
    assert!(r.get("models").is_none(), "no models trained yet: {r}");
    let tenure = (3 + i * 7 % 110) as f64;
    assert_eq!(r["rows"][0]["customer.tenureMonths"], json!(tenure), "the enriched row as used: {r}");
    assert_eq!(r["attributes"], json!({"attributes.visits": 2.0}), "only what the rules read: {r}");
    assert_eq!(r["contacts"], 0);
    assert_eq!(r["contactsDigest"].as_str().map(str::len), Some(32));
    assert!(r["counterReads"].as_u64().unwrap() > 0, "{r}");

    // The row changes and the card is answered; the replay still reads what was.
    let mut row = tutorial_customer(&customer);
    row["hasCreditCard"] = json!(true);
    api.post(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": [row]})).await.expect(201);
    let respond = json!({"customerId": customer, "recommendationId": id, "offerId": t.card, "outcome": "dismiss",
                         "idempotencyKey": "dismiss"});
    api.post("/api/v1/respond", &respond).await.expect(201);
    let now = api.post("/api/v1/recommend", &body).await.expect(200);
    assert_ne!(now["decisions"], d["decisions"], "the customer is decided otherwise now: {now}");
    let again = replay(api, id).await;
    assert_eq!(again["identical"], true, "{again}");
    assert_eq!(again["differences"], json!([]));
    assert_eq!(again["original"]["offers"], again["replayed"]["offers"]);
    assert_eq!(again["original"]["id"], id);

    // The next decision sees the contacts the first one made.
    let next = now["recommendationId"].as_str().unwrap();
    let receipt = api.get(&format!("/api/v1/interactions/{next}")).await.expect(200);
    assert!(receipt["reproduce"]["contacts"].as_u64().unwrap() >= 1, "{receipt}");
    assert_eq!(receipt["reproduce"]["outcomes"], 1, "{receipt}");
}

#[tokio::test]
async fn a_replay_of_an_unknown_interaction_is_not_found() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let reply = api.post("/api/v1/interactions/nope/replay", &json!({})).await;
    reply.expect_error(404, "NOT_FOUND");
    // Another tenant's decision is not this tenant's to replay.
    let d = support::recommend(api, "cust_42").await;
    let id = d["recommendationId"].as_str().unwrap();
    let other = api.create("/api/v1/tenants", &json!({"id": "other"})).await;
    let key = other["apiKey"].as_str().expect("a new tenant's key").to_string();
    let stranger = server.client(Some(&key));
    stranger.post(&format!("/api/v1/interactions/{id}/replay"), &json!({})).await.expect_error(404, "NOT_FOUND");
}
