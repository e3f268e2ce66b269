//! Contact policies over real HTTP, end to end: an outcome recorded by `/respond`
//! suppresses the offer in the next decision, the request's segments exclude a customer,
//! mutual exclusion and category suppression read the contacts decisions made, and a
//! mandatory offer skips bypassable policies but not `bypassable: false` ones. (Each type's
//! blocked and allowed cases are table-driven in `engine::contact`.)

mod support;

use serde_json::{json, Value};
use support::{tutorial_setup, Client, TestServer};

const CARD: &str = "Rewards credit card";
const SAVINGS: &str = "High-yield savings";

async fn decide(api: &Client, extra: Value) -> Value {
    let mut body = json!({"customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell"});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    api.post("/api/v1/recommend?explain=true", &body).await.expect(200)
}

fn shown(d: &Value) -> Vec<&str> {
    d["decisions"].as_array().unwrap().iter().map(|o| o["offerName"].as_str().unwrap()).collect()
}

/// The reason explain gives for removing `offer`.
fn reason<'d>(d: &'d Value, offer: &str) -> &'d str {
    let removed = d["explanation"]["removed"].as_array().unwrap();
    let r = removed.iter().find(|r| r["offerName"] == offer).unwrap_or_else(|| panic!("{offer} not removed: {d}"));
    r["reason"].as_str().unwrap()
}

async fn policy(api: &Client, body: Value) -> String {
    api.create("/api/v1/contact-policies", &body).await["id"].as_str().unwrap().to_string()
}

#[tokio::test]
async fn policies_act_on_outcomes_segments_contacts_and_mandatory_offers() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;

    // Segments: the request's `segments` exclude the customer from everything.
    let segments = policy(
        &api,
        json!({"name": "No vulnerable customers", "ruleType": "segment_exclusion",
               "config": {"excludeSegments": ["vulnerable"]}}),
    )
    .await;
    let d = decide(&api, json!({"segments": ["vulnerable"]})).await;
    assert_eq!(shown(&d), Vec::<&str>::new(), "{d}");
    assert_eq!(reason(&d, CARD), "segment_exclusion: the customer is in segment `vulnerable`");
    assert_eq!(api.delete(&format!("/api/v1/contact-policies/{segments}")).await.status, 204);

    // An outcome recorded by /respond suppresses that offer for the customer.
    policy(
        &api,
        json!({"name": "Not interested: 30 days", "ruleType": "outcome_based", "scopeId": t.card,
               "config": {"outcomeType": "not_interested", "lookbackDays": 30}}),
    )
    .await;
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), [CARD, SAVINGS], "{d}");
    let respond = json!({"customerId": "cust_42", "recommendationId": d["recommendationId"], "offerId": t.card,
                         "outcome": "not_interested", "idempotencyKey": "no-card"});
    api.post("/api/v1/respond", &respond).await.expect(201);
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), [SAVINGS], "{d}");
    assert!(reason(&d, CARD).starts_with("outcome_based: `not_interested` recorded 0.0 days ago"), "{d}");
    // The customer's suppressions say what is blocked and until when.
    let list = api.get("/api/v1/customers/cust_42/suppressions").await.expect(200);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "{list}");
    let s = &data[0];
    assert_eq!((s["scope"].as_str(), s["scopeId"].as_str()), (Some("offer"), Some(t.card.as_str())), "{s}");
    assert_eq!((s["policyType"].as_str(), s["isActive"].as_bool()), (Some("outcome_based"), Some(true)), "{s}");
    let days = |field: &str| arbiter::ids::parse_rfc3339(s[field].as_str().unwrap()).unwrap() / 86_400;
    assert_eq!(days("expiresAt") - days("createdAt"), 30, "{s}");
    assert_eq!(api.get("/api/v1/customers/nobody/suppressions").await.status, 404);

    // The savings offer was shown twice: a category suppression of one day now blocks
    // its category (both offers are `cross-sell`), and a mandatory savings offer skips it
    // unless it is not bypassable.
    let category = policy(
        &api,
        json!({"name": "One cross-sell a day", "ruleType": "category_suppression", "priority": 60,
               "config": {"suppressionDays": 1}}),
    )
    .await;
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), Vec::<&str>::new(), "{d}");
    assert!(reason(&d, SAVINGS).starts_with("category_suppression: offer "), "{d}");
    api.put(&format!("/api/v1/offers/{}", t.savings), &json!({"mandatory": true})).await.expect(200);
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), [SAVINGS], "a mandatory offer skips a bypassable policy: {d}");
    api.put(
        &format!("/api/v1/contact-policies/{category}"),
        &json!({"config": {"suppressionDays": 1, "bypassable": false}}),
    )
    .await
    .expect(200);
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), Vec::<&str>::new(), "bypassable: false binds mandatory offers too: {d}");
    assert_eq!(d["meta"]["afterSuppression"], 0, "{d}");
    server.stop().await;
}

#[tokio::test]
async fn a_metric_condition_blocks_while_the_customer_meets_it() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    tutorial_setup(&api).await;
    // cust_42 has 36 months of tenure.
    let body = |operator: &str| {
        json!({"name": format!("Tenure {operator} 40"), "ruleType": "metric_condition",
               "config": {"attribute": "customer.tenureMonths", "operator": operator, "value": 40}})
    };
    let id = policy(&api, body("lt")).await;
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), Vec::<&str>::new(), "{d}");
    assert_eq!(reason(&d, CARD), "metric_condition: customer.tenureMonths lt 40 holds");
    api.put(&format!("/api/v1/contact-policies/{id}"), &body("gte")).await.expect(200);
    assert_eq!(shown(&decide(&api, json!({})).await), [CARD, SAVINGS]);
    // A condition on the offer, or on a field no schema has, is refused by name.
    let mut on_offer = body("gte");
    (on_offer["name"], on_offer["config"]["attribute"]) = (json!("on the offer"), json!("offer.priority"));
    let message = api.post("/api/v1/contact-policies", &on_offer).await.expect_error(400, "BAD_REQUEST");
    assert!(message.starts_with("config.attribute: a metric condition reads the customer"), "{message}");
    let mut unknown = body("gte");
    (unknown["name"], unknown["config"]["attribute"]) = (json!("a typo"), json!("customer.tenure"));
    let message = api.post("/api/v1/contact-policies", &unknown).await.expect_error(400, "BAD_REQUEST");
    assert_eq!(message, "config.attribute: unknown attribute `customer.tenure`");
    server.stop().await;
}

#[tokio::test]
async fn an_offer_budget_counts_impressions_across_customers_and_survives_a_restart() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;
    policy(
        &api,
        json!({"name": "Savings: 3 a day", "ruleType": "budget_exhausted", "scopeId": t.savings,
               "config": {"maxPerDay": 3}}),
    )
    .await;
    let rows: Vec<Value> = (0..5).map(|i| support::tutorial_customer(&format!("budget_{i}"))).collect();
    api.create(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": rows})).await;
    let mut with_savings = 0;
    for i in 0..5 {
        let d = decide(&api, json!({"customerId": format!("budget_{i}")})).await;
        if d["controlGroup"] == true {
            continue;
        }
        if shown(&d).contains(&SAVINGS) {
            with_savings += 1;
        } else {
            assert_eq!(
                reason(&d, SAVINGS),
                "budget_exhausted: 3/3 impressions this day at scope=offer=".to_string() + &t.savings
            );
        }
    }
    assert_eq!(with_savings, 3, "the budget is the offer's, across customers");
    // The count is derived from the log: it is back after a restart.
    let server = server.restart().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), [CARD], "{d}");
    server.stop().await;
}

#[tokio::test]
async fn one_decision_shows_one_offer_of_a_group_and_mandatory_offers_pass_a_spent_total_cap() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;
    // No history at all: the group still allows only one of its offers per decision.
    let group = policy(
        &api,
        json!({"name": "Card or savings", "ruleType": "mutual_exclusion", "config": {"offerGroup": [t.card, t.savings]}}),
    )
    .await;
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), [CARD], "{d}");
    assert!(reason(&d, SAVINGS).contains("another offer it covers is in this decision"), "{d}");
    assert_eq!(api.delete(&format!("/api/v1/contact-policies/{group}")).await.status, 204);

    // A total cap of one, spent by that decision: the next shows nothing, except a
    // mandatory offer, which skips the bypassable cap (at rank time too).
    policy(
        &api,
        json!({"name": "One a month", "ruleType": "customer_total_cap", "config": {"maxTotal": 1, "periodType": "monthly"}}),
    )
    .await;
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), Vec::<&str>::new(), "{d}");
    api.put(&format!("/api/v1/offers/{}", t.savings), &json!({"mandatory": true})).await.expect(200);
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), [SAVINGS], "{d}");
    server.stop().await;
}

#[tokio::test]
async fn mutual_exclusion_keeps_the_offer_shown_and_blocks_the_rest_of_its_group() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;
    let d = decide(&api, json!({"limit": 1})).await;
    assert_eq!(shown(&d), [CARD], "{d}");
    policy(
        &api,
        json!({"name": "Card or savings", "ruleType": "mutual_exclusion",
               "config": {"offerGroup": [t.card, t.savings], "lookbackDays": 7}}),
    )
    .await;
    let d = decide(&api, json!({})).await;
    assert_eq!(shown(&d), [CARD], "{d}");
    assert!(reason(&d, SAVINGS).starts_with(&format!("mutual_exclusion: offer {} of the same group", t.card)), "{d}");

    // The analysis finds two caps on one offer and a scope that names nothing.
    for (name, scope_id) in [("Card daily", t.card.as_str()), ("Card daily again", t.card.as_str())] {
        let body = json!({"name": name, "ruleType": "frequency_cap", "scopeId": scope_id, "config": {"maxPerDay": 2}});
        policy(&api, body).await;
    }
    let body = json!({"name": "Loans", "ruleType": "cooldown", "scope": "category", "scopeId": "loans",
                      "config": {"cooldownHours": 24}});
    policy(&api, body).await;
    let report = api.post("/api/v1/policy-conflicts/analyze", &json!({})).await.expect(200);
    let kinds: Vec<&str> =
        report["conflicts"].as_array().unwrap().iter().map(|c| c["type"].as_str().unwrap()).collect();
    assert!(kinds.contains(&"overlap") && kinds.contains(&"dead_rule"), "{report}");
    assert_eq!(report["summary"]["errors"], 1, "{report}");
    server.stop().await;
}
