//! The web console in a real browser: headless Chromium (Debian's `chromium`) driven by
//! `playwright-core` (tests/console/drive.mjs) against a server this test starts with the
//! tutorial and some measured traffic. It signs in, asks why not for cust_42 (the card
//! first, the wealth offer removed by its rule), opens the experiment chart, breaks a
//! rule file and sees the diagnostic at its line, and diffs flow versions; every request
//! the page makes goes to the server itself. Screenshots go to
//! `target/console-screenshots/`. `.ci/run` installs Chromium and the npm package; the
//! test fails, never skips, when either is missing.

mod support;

use std::path::PathBuf;
use std::process::Command;

use serde_json::{json, Value};
use support::{tutorial_customer, tutorial_setup, Client, TestServer, Tutorial};

fn chromium() -> PathBuf {
    let path = PathBuf::from(std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()));
    assert!(path.exists(), "Chromium is needed at {} (apt-get install chromium, as .ci/run does)", path.display());
    path
}

fn console_dir() -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/console");
    assert!(
        dir.join("node_modules/playwright-core").exists(),
        "playwright-core is needed: (cd tests/console && npm ci), as .ci/run does"
    );
    dir
}

/// Measured traffic (both arms, conversions), and the uplift models trained on it.
async fn traffic(api: &Client, t: &Tutorial) {
    support::measured_traffic(api, t).await;
    api.post("/api/v1/algorithm-models/cross-sell/train", &json!({})).await.expect(200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_answers_why_not_charts_the_experiment_and_checks_rule_files_in_a_browser() {
    let (browser, dir) = (chromium(), console_dir());
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;
    let rules = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("plugins/cross_sell.rules"))
        .expect("plugins/cross_sell.rules");
    api.send("PUT", "/api/v1/plugins/cross_sell.rules", &[], Some(rules.as_bytes())).await.expect(200);
    traffic(&api, &t).await;
    // A second version, so the flows view has two to diff.
    let mut draft = api.get(&format!("/api/v1/decision-flows/{}", t.flow)).await.expect(200)["draftConfig"].clone();
    draft["nodes"][5]["config"]["maxCandidates"] = json!(3);
    api.put(&format!("/api/v1/decision-flows/{}", t.flow), &json!({"draftConfig": draft})).await.expect(200);
    api.post("/api/v1/decision-flows/publish", &json!({"id": t.flow})).await.expect(200);

    // What the views read, checked here too.
    let v1 = api.get(&format!("/api/v1/decision-flows/{}/versions/1", t.flow)).await.expect(200);
    assert_eq!(v1["configSnapshot"]["nodes"][5]["config"]["maxCandidates"], 5, "{v1}");
    api.get(&format!("/api/v1/decision-flows/{}/versions/9", t.flow)).await.expect_error(404, "NOT_FOUND");
    let qini = api.get("/api/v1/algorithm-models/cross-sell/qini").await.expect(200);
    let card = qini["offers"].as_array().unwrap().iter().find(|o| o["offerId"] == t.card.as_str()).unwrap().clone();
    let points = card["qini"].as_array().unwrap();
    assert_eq!(points.len(), 21, "{card}");
    assert_eq!(points[0]["gain"], 0.0);
    assert!(points[20]["gain"].as_f64().unwrap() > 0.0, "the card converts more when shown: {card}");
    assert_eq!(points[20]["gain"], points[20]["random"]);
    let customers: u64 = card["segments"].as_array().unwrap().iter().map(|s| s["customers"].as_u64().unwrap()).sum();
    assert_eq!(customers, card["rows"].as_u64().unwrap());
    let page = api.get("/console").await;
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").unwrap().contains("default-src 'none'"));
    api.get("/console/nothing.js").await.expect_error(404, "NOT_FOUND");

    let viewer = api.create("/api/v1/keys", &json!({"name": "console viewer", "role": "viewer"})).await;
    let viewer = viewer["apiKey"].as_str().unwrap().to_string();

    let shots = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots");
    let out = Command::new("node")
        .arg(dir.join("drive.mjs"))
        .current_dir(&dir)
        .env("ARBITER_URL", format!("http://{}", server.addr))
        .env("ARBITER_KEY", support::ADMIN_KEY)
        .env("ARBITER_VIEWER_KEY", &viewer)
        .env("SCREENSHOTS", &shots)
        .env("CHROMIUM", &browser)
        .output()
        .expect("node runs (the machine's Node.js)");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser checks failed:\n{stdout}\n{stderr}");
    for shot in ["why-not.png", "experiments.png", "rule-file.png", "flows.png"] {
        assert!(shots.join(shot).exists(), "screenshot {shot}");
    }
    server.stop().await;
}

/// The console at scale, run by hand (`ARBITER_CONSOLE_SCALE=1 cargo test --release --test
/// console_browser -- --nocapture at_scale`): a tenant with 1,000 offers (half removed
/// by a rule for cust_42) and 10,000 logged decisions; prints how long each view takes in
/// the browser (BENCHMARKS.md has the figures). Without the variable it says so and stops.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_scale() {
    if std::env::var_os("ARBITER_CONSOLE_SCALE").is_none() {
        eprintln!("set ARBITER_CONSOLE_SCALE=1 to measure the console at 1,000 offers and 10,000 decisions");
        return;
    }
    let (browser, dir) = (chromium(), console_dir());
    let server = TestServer::start().await;
    let api = server.client(Some(support::ADMIN_KEY));
    let t = tutorial_setup(&api).await;
    for i in 0..996 {
        let offer = api.create("/api/v1/offers", &support::offer(&format!("Offer {i:04}"), 50, 50, 50)).await;
        if i % 2 == 0 {
            let id = offer["id"].as_str().unwrap();
            let rule =
                support::rule(&format!("Offer {i:04} — long tenure"), id, "customer.tenureMonths", "gte", json!(100));
            api.create("/api/v1/qualification-rules", &rule).await;
        }
    }
    let mut spec = support::flow_spec("cross-sell", &t.schema, support::tutorial_formula());
    spec["draftConfig"]["nodes"][5]["config"]["maxCandidates"] = json!(10);
    api.put(&format!("/api/v1/decision-flows/{}", t.flow), &json!({"draftConfig": spec["draftConfig"]}))
        .await
        .expect(200);
    api.post("/api/v1/decision-flows/publish", &json!({"id": t.flow})).await.expect(200);
    spec["draftConfig"]["nodes"][5]["config"]["maxCandidates"] = json!(3);
    api.put(&format!("/api/v1/decision-flows/{}", t.flow), &json!({"draftConfig": spec["draftConfig"]}))
        .await
        .expect(200);
    let rows: Vec<Value> = (0..1000).map(|i| tutorial_customer(&format!("c{i:03}"))).collect();
    api.create(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": rows})).await;
    for i in 0..10_000 {
        let body =
            json!({"customerId": format!("c{:03}", i % 1000), "channel": "in_app", "decisionFlowKey": "cross-sell"});
        api.post("/api/v1/recommend", &body).await.expect(200);
    }
    // The server's share of the slowest view, for comparison with the browser's figure.
    let started = std::time::Instant::now();
    api.post("/api/v1/decision-flows/simulate", &json!({"id": t.flow})).await.expect(200);
    println!("POST /decision-flows/simulate over HTTP alone: {} ms", started.elapsed().as_millis());
    let started = std::time::Instant::now();
    let body = json!({"customerId": "cust_42", "channel": "in_app", "decisionFlowKey": "cross-sell"});
    api.post("/api/v1/recommend?dryRun=true&explain=true", &body).await.expect(200);
    println!("POST /recommend?dryRun=true&explain=true over HTTP alone: {} ms", started.elapsed().as_millis());
    let out = Command::new("node")
        .arg(dir.join("drive.mjs"))
        .current_dir(&dir)
        .env("ARBITER_URL", format!("http://{}", server.addr))
        .env("ARBITER_KEY", support::ADMIN_KEY)
        .env("SCREENSHOTS", PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/console-screenshots"))
        .env("CHROMIUM", &browser)
        .env("CONSOLE_SCALE", "1")
        .output()
        .expect("node runs");
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    println!("{stdout}");
    server.stop().await;
}
