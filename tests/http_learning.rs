//! Learning and measurement over real HTTP: contact policies (the tutorial's "What's
//! next" cap), adaptive propensity fed by `/respond`, the experiment results endpoint and
//! the uplift model endpoints.

mod support;

use serde_json::{json, Value};
use support::*;

async fn recommend_with(api: &Client, customer: &str, limit: Option<u32>, explain: bool) -> Value {
    let mut body = json!({"customerId": customer, "channel": "in_app", "decisionFlowKey": "cross-sell"});
    if let Some(limit) = limit {
        body["limit"] = json!(limit);
    }
    let path = if explain { "/api/v1/recommend?explain=true" } else { "/api/v1/recommend" };
    api.post(path, &body).await.expect(200)
}

fn names(rec: &Value) -> Vec<String> {
    rec["decisions"].as_array().unwrap().iter().map(|d| d["offerName"].as_str().unwrap().to_string()).collect()
}

/// The tutorial's "What's next": a customer_total_cap of 4 a month blocks the fifth
/// contact. One decision may not overshoot the cap either: with 3 contacts made, the
/// next decision shows one offer, not two.
#[tokio::test]
async fn customer_total_cap_blocks_the_fifth_contact_in_a_month() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    let policy = api
        .create(
            "/api/v1/contact-policies",
            &json!({"name": "Monthly budget", "ruleType": "customer_total_cap",
                    "config": {"maxTotal": 4, "periodType": "monthly"}}),
        )
        .await;
    assert_eq!(policy["scope"], "global", "a customer_total_cap counts every contact");
    assert_eq!(policy["priority"], 50);

    let first = recommend_with(api, "cust_42", Some(1), false).await; // contact 1
    assert_eq!(names(&first), ["Rewards credit card"]);
    let second = recommend_with(api, "cust_42", None, false).await; // contacts 2, 3
    assert_eq!(second["count"], 2);
    let third = recommend_with(api, "cust_42", None, true).await; // contact 4: room for one
    assert_eq!(names(&third), ["Rewards credit card"]);
    let removed = &third["explanation"]["removed"];
    let budget = removed.as_array().unwrap().iter().find(|r| r["offerName"] == "High-yield savings").unwrap();
    assert_eq!(budget["policy"]["name"], "Monthly budget", "{budget}");

    let fifth = recommend_with(api, "cust_42", None, true).await;
    assert_eq!(fifth["count"], 0, "{fifth}");
    assert_eq!(fifth["meta"]["afterQualification"], 2);
    assert_eq!(fifth["meta"]["afterSuppression"], 2, "a cap is not a suppression");
    assert_eq!(fifth["meta"]["afterContactPolicy"], 0);
    let why: Vec<&Value> = fifth["explanation"]["removed"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["nodeType"] == "contact_policy")
        .collect();
    assert_eq!(why.len(), 2);
    for r in why {
        assert_eq!(r["nodeId"], "cp");
        assert_eq!(r["policy"]["ruleType"], "customer_total_cap");
        assert_eq!(r["reason"], "customer_total_cap exceeded: 4/4 this month at scope=global");
    }
    // Another customer is not affected.
    api.create(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": [tutorial_customer("cust_43")]})).await;
    assert_eq!(recommend_with(api, "cust_43", None, false).await["count"], 2);

    // Contacts survive a restart (rebuilt from the decision log).
    let server = server.restart().await;
    let api = &server.admin;
    assert_eq!(recommend_with(api, "cust_42", None, false).await["count"], 0);

    // An override for the card lets it through; deleting the cap lifts it for all.
    let card_override = api
        .create(
            "/api/v1/contact-policies",
            &json!({"name": "Card always", "ruleType": "allow_override", "scope": "offer",
                    "scopeId": "Rewards credit card", "priority": 90}),
        )
        .await;
    assert_eq!(card_override["scopeId"], t.card.as_str(), "an offer named by name is stored by id");
    assert_eq!(names(&recommend_with(api, "cust_42", None, false).await), ["Rewards credit card"]);
    let listed = api.get("/api/v1/contact-policies").await.expect(200);
    let order: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(order, ["Card always", "Monthly budget"], "highest priority first");
    let id = policy["id"].as_str().unwrap();
    assert_eq!(api.delete(&format!("/api/v1/contact-policies/{id}")).await.status, 204);
    assert_eq!(recommend_with(api, "cust_42", None, false).await["count"], 2);
}

#[tokio::test]
async fn frequency_caps_and_cooldowns_per_offer_and_channel() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    api.create(
        "/api/v1/contact-policies",
        &json!({"name": "Card once a day", "ruleType": "frequency_cap", "scope": "offer", "scopeId": t.card,
                "config": {"maxPerDay": 1}}),
    )
    .await;
    let first = recommend_with(api, "cust_42", None, false).await;
    assert_eq!(names(&first), ["Rewards credit card", "High-yield savings"]);
    let second = recommend_with(api, "cust_42", None, true).await;
    assert_eq!(names(&second), ["High-yield savings"]);
    assert_eq!(second["meta"]["afterContactPolicy"], 1);
    let removed = second["explanation"]["removed"].as_array().unwrap();
    let r = removed.iter().find(|r| r["nodeType"] == "contact_policy").unwrap();
    assert_eq!(r["offerName"], "Rewards credit card");
    assert!(r["reason"].as_str().unwrap().starts_with("frequency_cap exceeded: 1/1 this day"), "{r}");

    // A cooldown on the in_app channel suppresses everything there for 48 hours.
    api.create(
        "/api/v1/contact-policies",
        &json!({"name": "In-app rest", "ruleType": "cooldown", "scope": "channel", "scopeId": "in_app",
                "config": {"cooldownHours": 48}}),
    )
    .await;
    let third = recommend_with(api, "cust_42", None, false).await;
    assert_eq!(third["count"], 0);
    // The cooldown blocks both offers (the card's daily cap, older at equal priority, is
    // what explain names for the card), so both count as suppressed.
    assert_eq!(third["meta"]["afterSuppression"], 0, "{third}");
    assert_eq!(third["meta"]["afterContactPolicy"], 0, "{third}");
    let email = api
        .post(
            "/api/v1/recommend",
            &json!({"customerId": "cust_42", "channel": "email", "decisionFlowKey": "cross-sell"}),
        )
        .await
        .expect(200);
    assert_eq!(names(&email), ["High-yield savings"], "the cooldown is per channel; the card's daily cap is not");
}

#[tokio::test]
async fn contact_policy_input_errors_name_the_field() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let cases = [
        (
            json!({"name": "x", "ruleType": "frequency_cap", "scope": "global", "config": {"maxPerDya": 1}}),
            "config.maxPerDya",
        ),
        (json!({"name": "x", "ruleType": "frequency_cap", "config": {"maxPerDay": 1}}), "scopeId"),
        (
            json!({"name": "x", "ruleType": "frequency_cap", "scope": "offer", "scopeId": "nope", "config": {"maxPerDay": 1}}),
            "scopeId",
        ),
        (json!({"name": "x", "ruleType": "customer_total_cap", "config": {"maxTotal": 4}}), "config.periodType"),
        (
            json!({"name": "x", "ruleType": "customer_total_cap", "config": {"maxTotal": 4, "periodType": "yearly"}}),
            "config.periodType",
        ),
        (
            json!({"name": "x", "ruleType": "cooldown", "scope": "global", "config": {"cooldownHours": 0}}),
            "config.cooldownHours",
        ),
        (json!({"name": "x", "ruleType": "frequency_caps", "scope": "global"}), "ruleType"),
        (json!({"name": "x", "ruleType": "allow_override", "scope": "global", "priority": 101}), "priority"),
    ];
    for (body, field) in cases {
        let reply = api.post("/api/v1/contact-policies", &body).await;
        let message = reply.expect_error(400, "BAD_REQUEST");
        assert!(message.contains(field), "{body}: {message}");
    }
    let ok =
        json!({"name": "cap", "ruleType": "customer_total_cap", "config": {"maxTotal": 4, "periodType": "weekly"}});
    api.create("/api/v1/contact-policies", &ok).await;
    api.post("/api/v1/contact-policies", &ok).await.expect_error(409, "CONFLICT");
    api.get("/api/v1/contact-policies/nope").await.expect_error(404, "NOT_FOUND");
    let viewer_key = api.create("/api/v1/keys", &json!({"name": "v", "role": "viewer"})).await;
    let viewer = server.client(viewer_key["apiKey"].as_str());
    viewer.post("/api/v1/contact-policies", &ok).await.expect_error(403, "FORBIDDEN");
    assert_eq!(viewer.get("/api/v1/contact-policies").await.status, 200);
}

/// Responses move the propensity (and so the score); replays count nothing twice.
#[tokio::test]
async fn responses_teach_propensity() {
    let server = TestServer::start().await;
    let api = &server.admin;
    tutorial_setup(api).await;
    let before = recommend_with(api, "cust_42", None, true).await;
    let p0 = before["decisions"][1]["explanation"]["rankingScores"]["propensity"].as_f64().unwrap();
    assert_eq!(p0, 0.5);
    assert_eq!(before["decisions"][1]["offerName"], "High-yield savings");
    for i in 0..3 {
        let body = json!({"customerId": "cust_42", "recommendationId": before["recommendationId"],
            "offerId": before["decisions"][1]["offerId"], "outcome": "convert", "idempotencyKey": format!("k{i}")});
        api.post("/api/v1/respond", &body).await.expect(201);
        // The replay of the same key.
        api.post("/api/v1/respond", &body).await.expect(200);
    }
    let after = recommend_with(api, "cust_42", None, true).await;
    let savings =
        after["decisions"].as_array().unwrap().iter().find(|d| d["offerName"] == "High-yield savings").unwrap();
    let p = savings["explanation"]["rankingScores"]["propensity"].as_f64().unwrap();
    // 3 positives, no category/global prior yet (< 20 / < 10 events): (3 + 10·0.5)/(3 + 10).
    assert!((p - 8.0 / 13.0).abs() < 1e-12, "{p}");
    // Counters are rebuilt from the stored responses on restart.
    let server = server.restart().await;
    let again = recommend_with(&server.admin, "cust_42", None, true).await;
    let savings =
        again["decisions"].as_array().unwrap().iter().find(|d| d["offerName"] == "High-yield savings").unwrap();
    assert_eq!(savings["explanation"]["rankingScores"]["propensity"].as_f64().unwrap(), p);
}

#[tokio::test]
async fn experiment_results_and_uplift_endpoints() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    let empty = api.get("/api/v1/experiments/cross-sell/results").await.expect(200);
    assert_eq!(empty["insufficientData"], true);
    assert_eq!(empty["zScore"], Value::Null, "undefined statistics are null, not NaN");
    assert_eq!(empty["holdoutPercent"], 10.0);
    api.get("/api/v1/experiments/nope/results").await.expect_error(404, "NOT_FOUND");

    let model = api.get(&format!("/api/v1/algorithm-models/{}", t.flow)).await.expect(200);
    assert_eq!(model["status"], "untrained");
    assert_eq!(model["flowKey"], "cross-sell");
    let features: Vec<&str> = model["features"].as_array().unwrap().iter().map(|f| f.as_str().unwrap()).collect();
    assert_eq!(
        features,
        [
            "avgMonthlyBalance",
            "hasBrokerage",
            "hasChecking",
            "hasCreditCard",
            "hasMortgage",
            "hasSavings",
            "tenureMonths",
            "tier"
        ],
        "numeric fields, then text fields (one-hot encoded once trained)"
    );
    assert_eq!(model["conversionOutcomes"], json!(["convert"]));
    let trained = api.post(&format!("/api/v1/algorithm-models/{}/train", t.flow), &json!({})).await.expect(200);
    assert_eq!(trained["status"], "trained");
    assert_eq!(trained["offers"][0]["trained"], false, "no data yet: {trained}");
    let uplift = api.get(&format!("/api/v1/algorithm-models/{}/uplift?customerId=cust_42", t.flow)).await.expect(200);
    assert_eq!(uplift["method"], "t_learner");
    assert_eq!(uplift["features"]["tenureMonths"], 36.0);
    assert_eq!(uplift["offers"].as_array().unwrap().len(), 4);
    assert_eq!(uplift["offers"][0]["segment"], "uncertain");
    api.get(&format!("/api/v1/algorithm-models/{}/uplift", t.flow)).await.expect_error(400, "BAD_REQUEST");
    api.get(&format!("/api/v1/algorithm-models/{}/uplift?customerId=c&method=s_learner", t.flow))
        .await
        .expect_error(400, "BAD_REQUEST");
    api.get("/api/v1/algorithm-models/nope/uplift?customerId=c").await.expect_error(404, "NOT_FOUND");
    let list = api.get("/api/v1/algorithm-models").await.expect(200);
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

/// The measurement endpoints on real data sent over HTTP: 600 customers decided for and
/// responding, then the experiment report and a model trained on demand.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn measurement_over_http_on_real_traffic() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    let (control, treated) = measured_traffic(api, &t).await;
    assert!(control >= 50, "about 10% of 600 held out, got {control}");
    let results = api.get(&format!("/api/v1/experiments/{}/results", t.flow)).await.expect(200);
    assert_eq!(results["treated"]["samples"], treated, "{results}");
    assert_eq!(results["control"]["samples"], control);
    assert_eq!(results["insufficientData"], false);
    assert_eq!(results["significant"], true, "{results}");
    assert!(results["revenue"]["incrementalTotal"].as_f64().unwrap() > 0.0);

    let model = api.post(&format!("/api/v1/algorithm-models/{}/train", t.flow), &json!({})).await.expect(200);
    let card = model["offers"].as_array().unwrap().iter().find(|o| o["offerId"] == t.card.as_str()).unwrap().clone();
    assert_eq!(card["trained"], true, "{model}");
    assert_eq!(card["nControl"], control, "each held-out customer is one control row for the card");
    // The learner is chosen on held-out rows; each learner's validation score is reported.
    let learners: Vec<&str> =
        card["validation"].as_array().unwrap().iter().map(|v| v["learner"].as_str().unwrap()).collect();
    assert_eq!(learners, ["t_learner", "x_learner", "dr_learner"], "{card}");
    assert!(card["validation"][0]["rLoss"].is_number(), "{card}");
    assert!(["t_learner", "x_learner", "dr_learner"].contains(&card["chosenLearner"].as_str().unwrap()), "{card}");
    assert!(card["averageEffect"].as_f64().unwrap() > 0.0, "{card}");
    assert_eq!(card["validationRows"], card["nTreated"].as_u64().unwrap() + card["nControl"].as_u64().unwrap());
    for method in ["dr_learner", "chosen"] {
        let uplift = api
            .get(&format!("/api/v1/algorithm-models/cross-sell/uplift?customerId=c001&method={method}"))
            .await
            .expect(200);
        let card =
            uplift["offers"].as_array().unwrap().iter().find(|o| o["offerId"] == t.card.as_str()).unwrap().clone();
        assert!(card["tau"].as_f64().unwrap() > 0.1 && card["se"].as_f64().unwrap() > 0.0, "{method}: {card}");
        assert!(card["rawTau"].is_number(), "{card}");
    }
    let uplift =
        api.get("/api/v1/algorithm-models/cross-sell/uplift?customerId=c001&method=x_learner").await.expect(200);
    let card = uplift["offers"].as_array().unwrap().iter().find(|o| o["offerId"] == t.card.as_str()).unwrap().clone();
    assert!(card["tau"].as_f64().unwrap() > 0.2, "{card}");
    assert_eq!(card["segment"], "persuadable");
    // The U factor now uses τ: explain shows it.
    let explained = recommend_with(api, "c001", None, true).await;
    let decisions = explained["decisions"].as_array().unwrap();
    let card = decisions.iter().find(|d| d["offerId"] == t.card.as_str()).unwrap();
    assert!(card["explanation"]["rankingScores"]["tau"].as_f64().unwrap() > 0.2, "{card}");
}
