//! Journeys over real HTTP: the tutorial's follow-up (an email lead from the cross-sell
//! flow, then, after an accept, a branch-appointment offer first on channel `branch`),
//! triggers and their deduplication, waits timed out by the scheduler across a restart,
//! the side-effect-free test walk, and definitions refused with the path of the problem.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{tutorial_setup, Client, TestServer};

const APPOINTMENT: &str = "Branch appointment — mortgage advice";

/// The follow-up journey: decide on email, wait up to three days for an accept, then
/// (for a customer of two years' tenure or more) book the branch appointment.
fn follow_up(appointment: &str) -> Value {
    json!({
        "name": "Mortgage follow-up",
        "status": "active",
        "maxDurationDays": 14,
        "definition": {
            "nodes": [
                {"id": "start", "type": "entry_trigger", "config": {"deduplication": "skip_if_active"}},
                {"id": "email-lead", "type": "nba_decision",
                 "config": {"decisionFlowKey": "cross-sell", "channel": "email"}},
                {"id": "await-accept", "type": "wait",
                 "config": {"delayHours": 72, "waitForEvent": {"outcome": "accept"}}},
                {"id": "tenure", "type": "condition_split", "config": {"condition": "customer.tenureMonths >= 24"}},
                {"id": "book-branch", "type": "channel_action",
                 "config": {"channel": "branch", "offerId": appointment}},
                {"id": "booked", "type": "exit"},
                {"id": "not-yet", "type": "exit"},
                {"id": "no-answer", "type": "exit"}
            ],
            "edges": [
                {"from": "start", "to": "email-lead"},
                {"from": "email-lead", "to": "await-accept"},
                {"from": "await-accept", "to": "tenure", "when": "event"},
                {"from": "await-accept", "to": "no-answer", "when": "timeout"},
                {"from": "tenure", "to": "book-branch", "when": "true"},
                {"from": "tenure", "to": "not-yet", "when": "false"},
                {"from": "book-branch", "to": "booked"}
            ]
        }
    })
}

async fn appointment_offer(api: &Client) -> String {
    let spec = json!({"name": APPOINTMENT, "status": "active", "category": "service", "priority": 10,
                      "businessValue": 10, "revenueValue": 0});
    api.create("/api/v1/offers", &spec).await["id"].as_str().unwrap().to_string()
}

async fn enrollment(api: &Client, journey: &str, customer: &str) -> Value {
    let list = api.get(&format!("/api/v1/journeys/{journey}/enrollments?customerId={customer}")).await.expect(200);
    let data = list["data"].as_array().unwrap();
    assert_eq!(data.len(), 1, "one enrollment for {customer}: {list}");
    data[0].clone()
}

/// Polls until the enrollment's status is `status` (the scheduler records asynchronously).
async fn until_status(api: &Client, journey: &str, customer: &str, status: &str) -> Value {
    for _ in 0..100 {
        let e = enrollment(api, journey, customer).await;
        if e["status"] == status {
            return e;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("enrollment of {customer} never became {status}: {}", enrollment(api, journey, customer).await);
}

fn steps(e: &Value) -> Vec<(String, String)> {
    let history = e["history"].as_array().unwrap_or_else(|| panic!("history: {e}"));
    history.iter().map(|h| (h["node"].as_str().unwrap().into(), h["type"].as_str().unwrap().into())).collect()
}

fn step<'a>(e: &'a Value, node: &str) -> &'a Value {
    let history = e["history"].as_array().unwrap();
    history.iter().rev().find(|h| h["node"] == node).unwrap_or_else(|| panic!("no `{node}` step: {e}"))
}

#[tokio::test]
async fn the_email_lead_is_followed_after_an_accept_by_a_branch_appointment_first_on_branch() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    tutorial_setup(&api).await;
    let appointment = appointment_offer(&api).await;
    let journey = api.create("/api/v1/journeys", &follow_up(APPOINTMENT)).await;
    let journey = journey["id"].as_str().unwrap().to_string();

    // Enrolled: the entry, a real decision on email, and now waiting for an accept.
    let enrolled = api.post(&format!("/api/v1/journeys/{journey}/enroll"), &json!({"customerId": "cust_42"})).await;
    let enrolled = enrolled.expect(201);
    assert_eq!(enrolled["enrolled"], true);
    let e = &enrolled["enrollment"];
    assert_eq!(e["currentNode"], "await-accept", "{e}");
    assert_eq!(e["waitingFor"]["outcome"], "accept");
    let lead = step(e, "email-lead");
    let interaction = lead["interactionId"].as_str().unwrap_or_else(|| panic!("the lead was logged: {lead}"));
    let card = lead["offers"][0].as_str().unwrap().to_string();
    let logged = api.get(&format!("/api/v1/interactions/{interaction}")).await.expect(200);
    assert_eq!(logged["channel"], "email", "the lead is a logged email decision: {logged}");

    // Enrolling again while active is skipped, and says so.
    let again = api.post(&format!("/api/v1/journeys/{journey}/enroll"), &json!({"customerId": "cust_42"})).await;
    let again = again.expect(200);
    assert_eq!(again["enrolled"], false);
    assert!(again["reason"].as_str().unwrap().contains("skip_if_active"), "{again}");

    // The accept on the email lead moves it on: tenure 36 ≥ 24, so to the branch action.
    let respond = json!({"customerId": "cust_42", "interactionId": interaction, "offerId": card, "outcome": "accept",
                         "idempotencyKey": "lead-accept"});
    api.post("/api/v1/respond", &respond).await.expect(201);
    let e = enrollment(&api, &journey, "cust_42").await;
    assert_eq!(e["currentNode"], "book-branch", "{e}");
    assert_eq!(e["waitingFor"]["kind"], "delivery");
    assert_eq!(step(&e, "tenure")["branch"], "true");
    assert_eq!(step(&e, "await-accept")["branch"], "event");

    // An in-app decision does not take what waits for the branch.
    let in_app = support::recommend(&api, "cust_42").await;
    let marked =
        |d: &Value| d["decisions"].as_array().unwrap().iter().any(|o| o["personalization"]["journeyId"].is_string());
    assert!(!marked(&in_app), "{in_app}");

    // The next branch decision shows the appointment first, marked as the journey's.
    let body = json!({"customerId": "cust_42", "channel": "branch", "decisionFlowKey": "cross-sell"});
    let branch = api.post("/api/v1/recommend", &body).await.expect(200);
    let first = &branch["decisions"][0];
    assert_eq!(first["offerName"], APPOINTMENT, "{branch}");
    assert_eq!(first["rank"], 1);
    assert_eq!(first["personalization"]["journeyId"], journey.as_str());
    let delivered_in = branch["interactionId"].as_str().unwrap().to_string();

    // Recorded: the contact counts for the policies, the step in the history.
    let contacts = api.get("/api/v1/customers/cust_42/contacts").await.expect(200);
    assert!(contacts.to_string().contains(&appointment), "the delivery is a contact: {contacts}");
    let e = until_status(&api, &journey, "cust_42", "completed").await;
    let action = step(&e, "book-branch");
    assert_eq!(action["interactionId"], delivered_in.as_str());
    assert_eq!(action["offers"][0], appointment.as_str());
    let walked = vec![
        ("start", "entry_trigger"),
        ("email-lead", "nba_decision"),
        ("await-accept", "wait"),
        ("await-accept", "wait"),
        ("tenure", "condition_split"),
        ("book-branch", "channel_action"),
        ("booked", "exit"),
    ];
    let walked: Vec<(String, String)> = walked.into_iter().map(|(a, b)| (a.into(), b.into())).collect();
    assert_eq!(steps(&e), walked);

    // Delivered once: the next branch decision is the flow's own.
    let next = api.post("/api/v1/recommend", &body).await.expect(200);
    assert_ne!(next["decisions"][0]["offerName"], APPOINTMENT, "{next}");
    assert!(!marked(&next), "{next}");
    // A response to the delivered offer is an ordinary response to that decision.
    let accept = json!({"customerId": "cust_42", "interactionId": delivered_in, "offerId": appointment,
                        "outcome": "accept", "idempotencyKey": "appointment-accept"});
    api.post("/api/v1/respond", &accept).await.expect(201);

    // The history survives a restart.
    let server = server.restart().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let after = enrollment(&api, &journey, "cust_42").await;
    assert_eq!(after["status"], "completed");
    assert_eq!(steps(&after), walked);
    assert_eq!(after["history"], e["history"]);

    // Its receipt names the delivered action, and a replay puts it first again.
    let receipt = api.get(&format!("/api/v1/interactions/{delivered_in}")).await.expect(200);
    assert_eq!(receipt["reproduce"]["journeyAction"]["offerId"], appointment.as_str(), "{receipt}");
    let replay = api.post(&format!("/api/v1/interactions/{delivered_in}/replay"), &json!({})).await.expect(200);
    assert_eq!(replay["identical"], true, "{replay}");
    assert_eq!(replay["replayed"]["offers"][0]["offerName"], APPOINTMENT);
    server.stop().await;
}

/// A wait for an event with a short timeout: moved on by the scheduler, also when the
/// server restarted while it waited; a pending channel action survives a restart too.
#[tokio::test]
async fn waits_time_out_by_the_scheduler_across_a_restart_and_actions_stay_pending() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    tutorial_setup(&api).await;
    let appointment = appointment_offer(&api).await;
    // The flow itself never shows the appointment: only the journey does.
    let never = support::rule("Appointment — journeys only", &appointment, "customer.tenureMonths", "lt", json!(0));
    api.create("/api/v1/qualification-rules", &never).await;
    let mut spec = follow_up(APPOINTMENT);
    // Two seconds to answer.
    spec["definition"]["nodes"][2]["config"]["delayHours"] = json!(2.0 / 3600.0);
    let journey = api.create("/api/v1/journeys", &spec).await["id"].as_str().unwrap().to_string();
    let enrolled = api.post(&format!("/api/v1/journeys/{journey}/enroll"), &json!({"customerId": "cust_42"})).await;
    assert!(enrolled.expect(201)["enrollment"]["resumeAt"].is_string());

    let server = server.restart().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let e = until_status(&api, &journey, "cust_42", "completed").await;
    assert_eq!(e["currentNode"], "no-answer", "{e}");
    assert_eq!(step(&e, "await-accept")["branch"], "timeout");

    // Another journey that goes straight to the branch action: still pending after a restart.
    let direct = json!({"name": "Direct", "status": "active", "definition": {
        "nodes": [{"id": "in", "type": "entry_trigger"},
                  {"id": "act", "type": "channel_action", "config": {"channel": "branch", "offerId": APPOINTMENT}},
                  {"id": "out", "type": "exit"}],
        "edges": [{"from": "in", "to": "act"}, {"from": "act", "to": "out"}]}});
    let direct = api.create("/api/v1/journeys", &direct).await["id"].as_str().unwrap().to_string();
    api.post(&format!("/api/v1/journeys/{direct}/enroll"), &json!({"customerId": "cust_42"})).await.expect(201);
    let server = server.restart().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let body = json!({"customerId": "cust_42", "channel": "branch", "decisionFlowKey": "cross-sell"});
    let branch = api.post("/api/v1/recommend", &body).await.expect(200);
    assert_eq!(branch["decisions"][0]["offerName"], APPOINTMENT, "{branch}");
    until_status(&api, &direct, "cust_42", "completed").await;
    // Added in front, the decision keeps its length: the flow's last offer gave way.
    let flow_only = api.post("/api/v1/recommend", &body).await.expect(200);
    let names = |d: &Value| -> Vec<String> {
        d["decisions"].as_array().unwrap().iter().map(|o| o["offerName"].as_str().unwrap().to_string()).collect()
    };
    let (with, without) = (names(&branch), names(&flow_only));
    assert_eq!(with.len(), without.len());
    assert_eq!(with[1..], without[..without.len() - 1], "{with:?} vs {without:?}");
    let ranks: Vec<u64> = branch["decisions"].as_array().unwrap().iter().map(|o| o["rank"].as_u64().unwrap()).collect();
    assert_eq!(ranks, (1..=ranks.len() as u64).collect::<Vec<_>>());
    server.stop().await;
}

/// An entry trigger enrolls on a matching response; `restart` ends the active enrollment
/// and starts another, `skip_if_active` keeps it, `allow_multiple` adds one.
#[tokio::test]
async fn triggers_enroll_on_responses_as_their_deduplication_says() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;
    let journey = |dedup: &str| {
        json!({"name": format!("On click ({dedup})"), "status": "active", "definition": {
            "nodes": [{"id": "in", "type": "entry_trigger",
                       "config": {"eventType": "click", "offerId": "Rewards credit card", "deduplication": dedup}},
                      {"id": "hold", "type": "wait", "config": {"delayHours": 24}},
                      {"id": "out", "type": "exit"}],
            "edges": [{"from": "in", "to": "hold"}, {"from": "hold", "to": "out"}]}})
    };
    let mut ids = Vec::new();
    for dedup in ["skip_if_active", "restart", "allow_multiple"] {
        ids.push(api.create("/api/v1/journeys", &journey(dedup)).await["id"].as_str().unwrap().to_string());
    }
    let click = |id: &str, offer: &str| {
        json!({"customerId": "cust_42", "interactionId": id, "offerId": offer, "outcome": "click",
               "idempotencyKey": format!("{id}-{offer}")})
    };
    for _ in 0..2 {
        let d = support::recommend(&api, "cust_42").await;
        let id = d["interactionId"].as_str().unwrap().to_string();
        api.post("/api/v1/respond", &click(&id, &t.card)).await.expect(201);
        // A click on another offer triggers nothing.
        api.post("/api/v1/respond", &click(&id, &t.savings)).await.expect(201);
    }
    let all = |i: usize| {
        let api = api.clone();
        let id = ids[i].clone();
        async move {
            let list = api.get(&format!("/api/v1/journeys/{id}/enrollments?customerId=cust_42")).await.expect(200);
            list["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| e["status"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    let cases: [(&str, usize, &[&str]); 3] = [
        ("skip_if_active", 0, &["active"]),
        ("restart", 1, &["exited", "active"]),
        ("allow_multiple", 2, &["active", "active"]),
    ];
    for (name, i, expected) in cases {
        let mut got = all(i).await;
        got.sort();
        let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
        want.sort();
        assert_eq!(got, want, "case `{name}`");
    }
    server.stop().await;
}

/// `POST /journeys/{id}/test` walks with dry-run decisions and records nothing, on a
/// draft journey too; a paused or draft journey refuses enrollment.
#[tokio::test]
async fn the_test_walk_records_nothing_and_drafts_do_not_enroll() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    tutorial_setup(&api).await;
    appointment_offer(&api).await;
    let mut spec = follow_up(APPOINTMENT);
    spec["status"] = json!("draft");
    let journey = api.create("/api/v1/journeys", &spec).await["id"].as_str().unwrap().to_string();
    support::recommend(&api, "cust_42").await;
    let before = api.get("/api/v1/customers/cust_42/interactions").await.expect(200);
    let contacts = api.get("/api/v1/customers/cust_42/contacts").await.expect(200);

    let walked = api
        .post(&format!("/api/v1/journeys/{journey}/test"), &json!({"customerId": "cust_42", "events": ["accept"]}))
        .await;
    let walked = walked.expect(200);
    assert_eq!(walked["completed"], true, "{walked}");
    assert_eq!(walked["endedAt"], "booked");
    let kinds: Vec<&str> = walked["steps"].as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["entry_trigger", "nba_decision", "wait", "condition_split", "channel_action", "exit"]);
    assert!(walked["steps"][1]["interactionId"].is_null(), "a dry run has no id: {walked}");
    assert!(!walked["steps"][1]["offers"].as_array().unwrap().is_empty());
    // Without the accept the wait times out.
    let walked = api.post(&format!("/api/v1/journeys/{journey}/test"), &json!({"customerId": "cust_42"})).await;
    assert_eq!(walked.expect(200)["endedAt"], "no-answer");

    let after = api.get("/api/v1/customers/cust_42/interactions").await.expect(200);
    assert_eq!(before["data"], after["data"], "the test walk logged nothing");
    assert_eq!(contacts, api.get("/api/v1/customers/cust_42/contacts").await.expect(200), "and recorded no contact");
    let refused = api.post(&format!("/api/v1/journeys/{journey}/enroll"), &json!({"customerId": "cust_42"})).await;
    assert!(refused.expect_error(409, "CONFLICT").contains("not active"));
    let missing = api.post(&format!("/api/v1/journeys/{journey}/enroll"), &json!({})).await;
    assert!(missing.expect_error(400, "BAD_REQUEST").contains("customerId"));
    server.stop().await;
}

/// Definitions the tenant cannot run are refused with the path of the problem.
#[tokio::test]
async fn definitions_are_checked_against_the_tenant() {
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    tutorial_setup(&api).await;
    let cases: [(&str, &str, Value, &str); 5] = [
        (
            "unknown flow",
            "/definition/nodes/1/config/decisionFlowKey",
            json!("cross-sel"),
            "definition.nodes[1].config.decisionFlowKey: no decision flow with key `cross-sel`",
        ),
        (
            "unknown channel",
            "/definition/nodes/4/config/channel",
            json!("branchh"),
            "definition.nodes[4].config.channel: no channel with id or name `branchh`",
        ),
        (
            "unknown offer",
            "/definition/nodes/4/config/offerId",
            json!("Nope"),
            "definition.nodes[4].config.offerId: no offer with id or name `Nope`",
        ),
        (
            "unknown outcome",
            "/definition/nodes/2/config/waitForEvent/outcome",
            json!("acept"),
            "definition.nodes[2].config.waitForEvent.outcome: unknown outcome type `acept`",
        ),
        (
            "bad condition",
            "/definition/nodes/3/config/condition",
            json!("customer.tenureMonth >= 24"),
            "definition.nodes[3].config.condition: line 1, column 1",
        ),
    ];
    for (name, pointer, value, expected) in cases {
        let mut spec = follow_up("Rewards credit card");
        *spec.pointer_mut(pointer).unwrap_or_else(|| panic!("case `{name}`: {pointer}")) = value;
        let reply = api.post("/api/v1/journeys", &spec).await;
        let message = reply.expect_error(400, "BAD_REQUEST");
        assert!(message.contains(expected), "case `{name}`: {message}");
    }
    // A journey's offer cannot be deleted under it.
    let spec = follow_up("Rewards credit card");
    api.create("/api/v1/journeys", &spec).await;
    let offers = api.get("/api/v1/offers?limit=100").await.expect(200);
    let card =
        offers["data"].as_array().unwrap().iter().find(|o| o["name"] == "Rewards credit card").unwrap()["id"].clone();
    let refused = api.delete(&format!("/api/v1/offers/{}", card.as_str().unwrap())).await;
    assert!(refused.expect_error(409, "CONFLICT").contains("journey `Mortgage follow-up`"));
    server.stop().await;
}

/// The scheduler's expiry, on the journey runtime itself: an enrollment still active past
/// its journey's `maxDurationDays` ends as `expired` on the next tick, while one of a
/// paused journey does not move.
#[tokio::test]
async fn enrollments_past_their_maximum_duration_expire_unless_the_journey_is_paused() {
    use arbiter::tenant::journeys::{Decider, Journeys};
    struct NoDecisions;
    impl Decider for NoDecisions {
        fn decide(&self, _: &arbiter::engine::RecommendRequest, _: bool) -> Result<arbiter::engine::Decision, String> {
            Err("not in this test".into())
        }
    }
    let dir = support::temp_dir("journey-expiry");
    let store: std::sync::Arc<dyn arbiter::store::Storage> =
        std::sync::Arc::new(arbiter::store::SledStore::open(dir.path()).unwrap());
    let mut catalog = arbiter::demo::tutorial().unwrap().catalog;
    let spec = |name: &str, status: &str| {
        json!({"name": name, "status": status, "maxDurationDays": 1, "definition": {
            "nodes": [{"id": "in", "type": "entry_trigger"}, {"id": "hold", "type": "wait", "config": {"delayHours": 48}},
                      {"id": "out", "type": "exit"}],
            "edges": [{"from": "in", "to": "hold"}, {"from": "hold", "to": "out"}]}})
    };
    let mut ids = Vec::new();
    for (name, status) in [("Short", "active"), ("Paused", "paused")] {
        let spec = arbiter::model::parse_value("", &spec(name, status)).unwrap();
        ids.push(catalog.add_journey(spec).unwrap().meta.id.clone());
    }
    let journeys = Journeys::load("t".into(), store, Default::default(), Default::default());
    journeys.install(catalog.compile_journeys().0);
    // Enrolled two days ago, waiting until tomorrow: past the one-day maximum.
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let at = |secs: i64| arbiter::ids::rfc3339(secs, 0);
    let ops: Vec<arbiter::store::Op> = ids
        .iter()
        .enumerate()
        .map(|(i, journey)| {
            let record = json!({"id": format!("e{i}"), "journeyId": journey, "customerId": "cust_42",
                "status": "active", "currentNode": "hold", "enrolledAt": at(now - 2 * 86_400),
                "updatedAt": at(now - 2 * 86_400), "resumeAt": at(now + 86_400), "history": []});
            let key =
                arbiter::store::keys::key("t", arbiter::store::keys::Kind::Enrollment, &[journey, &format!("e{i}")]);
            arbiter::store::Op::Put { key, value: serde_json::to_vec(&record).unwrap() }
        })
        .collect();
    journeys.replicated(&ops);
    journeys.tick(&NoDecisions).await;
    let status = |i: usize| {
        let list = journeys.enrollments(&ids[i], Some("cust_42")).unwrap();
        serde_json::to_value(&list.data[0]).unwrap()
    };
    assert_eq!(status(0)["status"], "expired", "{}", status(0));
    assert_eq!(status(0)["history"][0]["type"], "expired");
    assert_eq!(status(1)["status"], "active", "a paused journey's enrollments wait");
}
