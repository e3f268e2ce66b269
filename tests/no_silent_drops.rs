//! Nothing that decides stops applying without a word: deleting an offer or a channel
//! that rules, policies or flows depend on is refused naming them, and a stored contact
//! policy that no longer validates fails the compile instead of being skipped.

mod support;

use arbiter::model::policy::{ContactPolicy, ContactPolicySpec};
use serde_json::json;
use support::{tutorial_setup, TestServer};

#[tokio::test]
async fn deleting_what_rules_depend_on_is_refused_naming_them() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    let message = api.delete(&format!("/api/v1/offers/{}", t.card)).await.expect_error(409, "CONFLICT");
    assert!(message.contains("qualification rule `Card — no card yet`"), "{message}");
    assert!(message.contains("Card — tenure >= 6mo"), "{message}");
    let email = &t.channels[0];
    let rule = json!({"name": "Email needs consent", "ruleType": "attribute_condition", "scope": "channel",
        "scopeId": email, "config": {"attribute": "customer.hasChecking", "operator": "eq", "value": true}});
    api.create("/api/v1/qualification-rules", &rule).await;
    let message = api.delete(&format!("/api/v1/channels/{email}")).await.expect_error(409, "CONFLICT");
    assert!(message.contains("qualification rule `Email needs consent`"), "{message}");
    // A channel nothing depends on can go.
    api.delete(&format!("/api/v1/channels/{}", t.channels[2])).await.expect(204);
    // The offers and channel are all still there and the decision is unchanged.
    let d = support::recommend(api, "cust_42").await;
    assert_eq!(d["decisions"][0]["offerName"], "Rewards credit card", "{d}");
    server.stop().await;
}

#[tokio::test]
async fn a_channel_used_by_a_score_override_cannot_be_deleted() {
    let server = TestServer::start().await;
    let api = &server.admin;
    let t = tutorial_setup(api).await;
    let mut flow = api.get(&format!("/api/v1/decision-flows/{}", t.flow)).await.expect(200);
    for node in flow["draftConfig"]["nodes"].as_array_mut().unwrap() {
        if node["type"] == "score" {
            node["config"]["overrides"] =
                json!([{"scope": "channel", "value": "branch", "method": "priority_weighted"}]);
        }
    }
    let body = json!({"draftConfig": flow["draftConfig"]});
    api.put(&format!("/api/v1/decision-flows/{}", t.flow), &body).await.expect(200);
    let message = api.delete(&format!("/api/v1/channels/{}", t.channels[2])).await.expect_error(409, "CONFLICT");
    assert!(message.contains("decision flow `cross-sell`"), "{message}");
    server.stop().await;
}

#[test]
fn a_stored_policy_that_no_longer_validates_fails_the_compile() {
    let mut t = arbiter::demo::tutorial().unwrap();
    let spec: ContactPolicySpec = serde_json::from_value(json!({
        "name": "Broken cap", "ruleType": "frequency_cap", "scope": "global", "priority": 500,
        "config": {"maxPerDay": 1}}))
    .unwrap();
    assert!(spec.validate().is_err(), "the record is one today's validation refuses");
    t.catalog.policies.push(ContactPolicy { meta: arbiter::model::Meta::new(), spec });
    let error = t.catalog.publish(&t.flow_id, None).expect_err("the flow does not compile");
    assert!(error.to_string().contains("contact policy `Broken cap`"), "{error}");
}
