//! Journeys on three nodes over a NATS JetStream cluster: an enrollment made through one
//! node runs on the customer's owner, every node holds it with the same history, a
//! response through another node moves it, and the channel action is delivered by a
//! `/recommend` through a third. Needs `nats-server` 2.10 or newer (`.ci/run` installs
//! it); the test fails, never skips, without it.

mod support;

use serde_json::{json, Value};
use support::cluster::{node, until, Nats};
use support::{tutorial_setup, Client, ADMIN_KEY};

const APPOINTMENT: &str = "Branch appointment";

fn journey() -> Value {
    json!({"name": "Follow-up", "status": "active", "definition": {
        "nodes": [{"id": "start", "type": "entry_trigger"},
                  {"id": "lead", "type": "nba_decision", "config": {"decisionFlowKey": "cross-sell", "channel": "email"}},
                  {"id": "await", "type": "wait", "config": {"waitForEvent": {"outcome": "accept"}}},
                  {"id": "book", "type": "channel_action", "config": {"channel": "branch", "offerId": APPOINTMENT}},
                  {"id": "done", "type": "exit"}],
        "edges": [{"from": "start", "to": "lead"}, {"from": "lead", "to": "await"},
                  {"from": "await", "to": "book"}, {"from": "book", "to": "done"}]}})
}

async fn enrollment(api: &Client, journey: &str) -> Option<Value> {
    let list = api.get(&format!("/api/v1/journeys/{journey}/enrollments?customerId=cust_42")).await;
    if list.status != 200 {
        return None;
    }
    list.json()["data"].as_array().and_then(|d| d.first().cloned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_enrollment_runs_on_the_customers_owner_and_every_node_holds_it() {
    let tmp = tempfile::Builder::new().prefix("arbiter-cluster-journeys-").tempdir().unwrap();
    let nats = Nats::start(3, tmp.path());
    let mut urls = nats.urls.clone();
    let a = node(tmp.path(), "a", &urls);
    urls.rotate_left(1);
    let b = node(tmp.path(), "b", &urls);
    urls.rotate_left(1);
    let c = node(tmp.path(), "c", &urls);
    let apis = [a.addr, b.addr, c.addr].map(|addr| Client::new(addr, Some(ADMIN_KEY)));
    let [api_a, api_b, api_c] = &apis;

    tutorial_setup(api_a).await;
    let offer = json!({"name": APPOINTMENT, "status": "active", "category": "service", "priority": 5,
                       "businessValue": 5, "revenueValue": 0});
    api_a.create("/api/v1/offers", &offer).await;
    let id = api_a.create("/api/v1/journeys", &journey()).await["id"].as_str().unwrap().to_string();
    for api in [api_b, api_c] {
        until("the journey is on every node", || async {
            api.get(&format!("/api/v1/journeys/{id}")).await.status == 200
        })
        .await;
    }

    // Enrolled through B: the owner walks it to the wait, and every node holds the result.
    let enrolled = api_b.post(&format!("/api/v1/journeys/{id}/enroll"), &json!({"customerId": "cust_42"})).await;
    let enrolled = enrolled.expect(201);
    let e = &enrolled["enrollment"];
    assert_eq!(e["currentNode"], "await", "{enrolled}");
    let lead = &e["history"][1];
    let interaction = lead["interactionId"].as_str().unwrap().to_string();
    let offer_shown = lead["offers"][0].as_str().unwrap().to_string();
    for api in &apis {
        until("the enrollment is on every node", || async {
            enrollment(api, &id).await.is_some_and(|got| got["currentNode"] == "await")
        })
        .await;
    }
    // Enrolling again through C finds it active, wherever it runs.
    let again = api_c.post(&format!("/api/v1/journeys/{id}/enroll"), &json!({"customerId": "cust_42"})).await;
    assert_eq!(again.expect(200)["enrolled"], false);

    // The accept through C moves it to the branch action; the branch decision through A
    // shows the appointment first.
    let accept = json!({"customerId": "cust_42", "interactionId": interaction, "offerId": offer_shown,
                        "outcome": "accept", "idempotencyKey": "cluster-accept"});
    api_c.post("/api/v1/respond", &accept).await.expect(201);
    for api in &apis {
        until("the accept moved it on every node", || async {
            enrollment(api, &id).await.is_some_and(|got| got["currentNode"] == "book")
        })
        .await;
    }
    let body = json!({"customerId": "cust_42", "channel": "branch", "decisionFlowKey": "cross-sell"});
    let branch = api_a.post("/api/v1/recommend", &body).await.expect(200);
    assert_eq!(branch["decisions"][0]["offerName"], APPOINTMENT, "{branch}");

    // Completed, with one history, on every node.
    let mut histories = Vec::new();
    for api in &apis {
        until("completed on every node", || async {
            enrollment(api, &id).await.is_some_and(|got| got["status"] == "completed")
        })
        .await;
        histories.push(enrollment(api, &id).await.unwrap()["history"].clone());
    }
    assert_eq!(histories[0], histories[1]);
    assert_eq!(histories[0], histories[2]);
    let kinds: Vec<&str> = histories[0].as_array().unwrap().iter().map(|h| h["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["entry_trigger", "nba_decision", "wait", "wait", "channel_action", "exit"]);
    drop((a, b, c));
}
