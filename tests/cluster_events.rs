//! Events across three arbiter nodes over a three-server NATS JetStream cluster: a
//! respond on one node finds a decision made through another, experiment counts
//! converge on every node, a customer_total_cap hammered through all three is never
//! exceeded, under recommend+respond load, kill -9 of one arbiter node and one NATS
//! server fails no request on the surviving nodes and loses no acknowledged write, and a
//! node that joins afterwards has every event.
//! Needs `nats-server` 2.10 or newer, as `tests/cluster.rs` does.

mod support;

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::cluster::{node, until, Nats};
use support::{tutorial_customer, tutorial_setup, Client, ADMIN_KEY};

/// How long the load goes on after the kill: through a stream's leader election (about
/// 10 s here when the killed NATS server led it), and a few seconds after it.
const AFTER_THE_KILL: Duration = Duration::from_secs(16);

fn body(customer: &str) -> Value {
    json!({"customerId": customer, "channel": "in_app", "decisionFlowKey": "cross-sell"})
}

/// The `n`th of the target nodes, chosen under their lock, and whether it is C (the
/// third), then counted in `on_c` until [`counted`] has run its request: C is killed once
/// it is no longer a target and nothing sent to it is unanswered.
fn pick(targets: &Mutex<Vec<Client>>, on_c: &AtomicUsize, n: usize) -> (Client, usize, bool) {
    let nodes = targets.lock().unwrap();
    let i = n % nodes.len();
    if i == 2 {
        on_c.fetch_add(1, Ordering::SeqCst);
    }
    (nodes[i].clone(), i, i == 2)
}

/// Runs `request`, then takes it out of `in_flight` when `counted` by [`pick`].
async fn counted<T>(in_flight: &AtomicUsize, counted: bool, request: impl std::future::Future<Output = T>) -> T {
    let out = request.await;
    if counted {
        in_flight.fetch_sub(1, Ordering::SeqCst);
    }
    out
}

/// What an acknowledged respond was: to be found again on the surviving nodes.
#[derive(Debug, Clone)]
struct Acknowledged {
    customer: String,
    decision: String,
    offer: String,
    key: String,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn events_are_shared_caps_hold_and_a_killed_node_loses_nothing() {
    let tmp = tempfile::Builder::new().prefix("arbiter-cluster-events-").tempdir().unwrap();
    let mut nats = Nats::start(3, tmp.path());
    let rotated = |by: usize| {
        let mut urls = nats.urls.clone();
        urls.rotate_left(by);
        urls
    };
    let a = node(tmp.path(), "a", &rotated(0));
    let b = node(tmp.path(), "b", &rotated(1));
    let mut c = Some(node(tmp.path(), "c", &rotated(2)));
    let api = |addr| Client::new(addr, Some(ADMIN_KEY));
    let (api_a, api_b, api_c) = (api(a.addr), api(b.addr), api(c.as_ref().unwrap().addr));

    let tutorial = tutorial_setup(&api_a).await;
    let rows: Vec<Value> = (0..40).map(|i| tutorial_customer(&format!("load_{i}"))).collect();
    let capped: Vec<Value> = (0..30).map(|i| tutorial_customer(&format!("cap_{i}"))).collect();
    for rows in [rows, capped] {
        api_a.post(&format!("/api/v1/schemas/{}/data", tutorial.schema), &json!({"rows": rows})).await.expect(201);
    }
    // The capped customers are ten who are not in the holdout (a dry run records nothing).
    let mut capped = Vec::new();
    for i in 0..30 {
        let d = api_a.post("/api/v1/recommend?dryRun=true", &body(&format!("cap_{i}"))).await.expect(200);
        if d["controlGroup"] != true && !d["decisions"].as_array().unwrap().is_empty() && capped.len() < 10 {
            capped.push(format!("cap_{i}"));
        }
    }
    assert_eq!(capped.len(), 10, "too few treated customers among 30");
    for api in [&api_b, &api_c] {
        until("the flow and the rows are live on every node", || async {
            let d = api.post("/api/v1/recommend?dryRun=true", &body(&capped[9])).await;
            d.status == 200 && !d.json()["decisions"].as_array().unwrap().is_empty()
        })
        .await;
    }

    // A respond on C to a decision made through A; the decision reads back on every node.
    let decision = api_a.post("/api/v1/recommend", &body("cust_42")).await.expect(200);
    let id = decision["recommendationId"].as_str().unwrap().to_string();
    let offer = decision["decisions"][0]["offerId"].as_str().unwrap().to_string();
    for api in [&api_a, &api_b, &api_c] {
        until("the decision reads back on every node", || async {
            api.get(&format!("/api/v1/interactions/{id}")).await.status == 200
        })
        .await;
    }
    let respond = json!({"customerId": "cust_42", "recommendationId": id, "offerId": offer,
                         "outcome": "accept", "idempotencyKey": "first-accept"});
    let recorded = api_c.post("/api/v1/respond", &respond).await.expect(201);
    assert_eq!(recorded["interactionId"], id.as_str(), "{recorded}");
    // The same key through B is the same response, not a second one.
    assert_eq!(api_b.post("/api/v1/respond", &respond).await.expect(200)["duplicate"], true);

    // Experiment counts (from decisions and responses made on whichever node) converge.
    let results = "/api/v1/experiments/cross-sell/results";
    until("experiment counts converge", || async {
        let on_a = api_a.get(results).await.expect(200);
        on_a == api_b.get(results).await.expect(200) && on_a == api_c.get(results).await.expect(200)
    })
    .await;

    // A customer_total_cap of 4 a month, hammered through all three nodes at once.
    let policy = json!({"name": "Monthly budget", "ruleType": "customer_total_cap",
                        "config": {"maxTotal": 4, "periodType": "monthly"}});
    let policy = api_a.create("/api/v1/contact-policies", &policy).await;
    let path = format!("/api/v1/contact-policies/{}", policy["id"].as_str().unwrap());
    for api in [&api_b, &api_c] {
        until("the cap is on every node", || async { api.get(&path).await.status == 200 }).await;
    }
    let hammering = (0..10).flat_map(|i| (0..6).map(move |n| (i, n))).map(|(i, n)| {
        let api = [&api_a, &api_b, &api_c][n % 3].clone();
        let customer = capped[i].clone();
        async move {
            let d = api.post("/api/v1/recommend", &body(&customer)).await.expect(200);
            (i, d["decisions"].as_array().unwrap().len())
        }
    });
    let mut shown = [0usize; 10];
    for (i, n) in futures_util::future::join_all(hammering).await {
        shown[i] += n;
    }
    eprintln!("offers shown per capped customer (cap 4): {shown:?}");
    assert!(shown.iter().all(|n| *n == 4), "a cap of 4 was not held exactly across nodes: {shown:?}");

    // The cap is lifted everywhere before the load, which decides for other customers.
    api_a.delete(&path).await.expect(204);
    for api in [&api_b, &api_c] {
        until("the cap is lifted on every node", || async { api.get(&path).await.status == 404 }).await;
    }

    // Load on all three; then kill -9 of C and of the NATS server A talks to first.
    let stop = Arc::new(AtomicBool::new(false));
    // Requests sent to C itself and not yet answered: C is killed once there are none
    // (a request cut by the kill is C's own client's loss). Forwarded ones keep coming.
    let on_c = Arc::new(AtomicUsize::new(0));
    let targets = Arc::new(Mutex::new(vec![api_a.clone(), api_b.clone(), api_c.clone()]));
    let acknowledged: Arc<Mutex<Vec<Acknowledged>>> = Arc::default();
    let decided: Arc<Mutex<Vec<String>>> = Arc::default();
    // When each request that succeeded finished, and how long it took.
    let done: Arc<Mutex<Vec<(Instant, Duration)>>> = Arc::default();
    // (when, which node, what failed), on the surviving nodes.
    let failures: Arc<Mutex<Vec<(Instant, usize, String)>>> = Arc::default();
    let mut workers = Vec::new();
    for w in 0..6usize {
        let (stop, targets, acknowledged, decided, failures, done) =
            (stop.clone(), targets.clone(), acknowledged.clone(), decided.clone(), failures.clone(), done.clone());
        let on_c = on_c.clone();
        workers.push(tokio::spawn(async move {
            let mut n = w;
            while !stop.load(Ordering::Relaxed) {
                n += 7;
                let customer = format!("load_{}", n % 40);
                let (node, at, is_c) = pick(&targets, &on_c, n);
                let sent = Instant::now();
                let d = counted(&on_c, is_c, node.post("/api/v1/recommend", &body(&customer))).await;
                if d.status == 200 {
                    done.lock().unwrap().push((Instant::now(), sent.elapsed()));
                } else {
                    failures.lock().unwrap().push((Instant::now(), at, format!("recommend: {}", d.brief())));
                    continue;
                }
                let d = d.json();
                let id = d["recommendationId"].as_str().unwrap().to_string();
                decided.lock().unwrap().push(id.clone());
                let Some(offer) = d["decisions"][0]["offerId"].as_str() else { continue };
                let key = format!("{id}:{offer}");
                let respond = json!({"customerId": customer, "recommendationId": id, "offerId": offer,
                                     "outcome": "click", "idempotencyKey": key});
                let (node, then, is_c) = pick(&targets, &on_c, n / 3);
                let sent = Instant::now();
                let r = counted(&on_c, is_c, node.post("/api/v1/respond", &respond)).await;
                done.lock().unwrap().push((Instant::now(), sent.elapsed()));
                // 200 is the key's first result: an owner recorded it and went before it
                // answered, and the next owner found it by its key.
                if r.status == 201 || (r.status == 200 && r.json()["duplicate"] == true) {
                    let offer = offer.to_string();
                    acknowledged.lock().unwrap().push(Acknowledged { customer, decision: id, offer, key });
                } else {
                    failures.lock().unwrap().push((Instant::now(), then, format!("respond: {}", r.brief())));
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let before = acknowledged.lock().unwrap().len();
    // Workers stop sending to C first, then it and a NATS server are killed.
    targets.lock().unwrap().pop();
    until("C has answered what was sent to it", || async { on_c.load(Ordering::SeqCst) == 0 }).await;
    drop(c.take()); // SIGKILL
    let server = &mut nats.servers[0];
    server.kill().unwrap();
    server.wait().unwrap();
    let killed = Instant::now();
    tokio::time::sleep(AFTER_THE_KILL).await;
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (acknowledged, decided) = (acknowledged.lock().unwrap().clone(), decided.lock().unwrap().clone());
    let failures = failures.lock().unwrap().clone();
    let done = done.lock().unwrap().clone();
    let finished_after = |from: Duration| done.iter().filter(|(at, _)| *at >= killed + from).count();
    let longest = done.iter().map(|(_, took)| *took).max().unwrap_or_default();
    let first_after =
        done.iter().filter(|(at, took)| *at > killed && *at - *took > killed).map(|(at, _)| *at - killed).min();
    eprintln!(
        "under load: {} decisions, {} acknowledged responds ({before} before the kill), {} failed requests on A and B; \
         after the kill, the first request sent after it finished at {first_after:?}, {} requests finished in the \
         last 3 s, the slowest request took {longest:?}",
        decided.len(),
        acknowledged.len(),
        failures.len(),
        finished_after(AFTER_THE_KILL - Duration::from_secs(3)),
    );
    for (name, server) in [("A", &a), ("B", &b)] {
        let log = server.log_text();
        let notable: Vec<&str> = log.lines().filter(|l| l.contains("WARN") || l.contains("ERROR")).collect();
        eprintln!("{name}'s warnings and errors ({}):\n{}", notable.len(), notable.join("\n"));
    }
    assert!(failures.is_empty(), "requests failed on the surviving nodes: {failures:?}");
    assert!(acknowledged.len() > before, "no respond was acknowledged after the kill");
    assert!(finished_after(AFTER_THE_KILL - Duration::from_secs(3)) > 0, "no request finished after the failover");

    // Nothing acknowledged is lost: every decision reads back on A and B, and every
    // acknowledged respond is known by its key (a duplicate) there.
    for api in [&api_a, &api_b] {
        for id in &decided {
            let found = api.get(&format!("/api/v1/interactions/{id}")).await;
            assert_eq!(found.status, 200, "decision {id} lost: {}", found.brief());
        }
        for r in &acknowledged {
            let again = json!({"customerId": r.customer, "recommendationId": r.decision, "offerId": r.offer,
                               "outcome": "click", "idempotencyKey": r.key});
            let reply = api.post("/api/v1/respond", &again).await;
            assert_eq!(reply.status, 200, "acknowledged respond {} lost: {}", r.key, reply.brief());
            assert_eq!(reply.json()["duplicate"], true);
        }
    }

    // A node that joins now catches up on the events too: it finds the decisions, and
    // reports the same experiment results (once A and B have mirrored everything).
    let d = node(tmp.path(), "d", &rotated(1));
    let api_d = api(d.addr);
    for id in decided.iter().step_by(97) {
        api_d.get(&format!("/api/v1/interactions/{id}")).await.expect(200);
    }
    until("experiment counts converge on the new node", || async {
        let on_a = api_a.get(results).await.expect(200);
        on_a == api_b.get(results).await.expect(200) && on_a == api_d.get(results).await.expect(200)
    })
    .await;
    drop((a, b, d));
}
