//! Shared helpers for the HTTP integration tests: a real arbiter server on port 0 in this
//! process (unique temp data folder, oneshot shutdown), a tiny HTTP/1.1 client over
//! `tokio::net::TcpStream` (one request per connection, `Connection: close`), and the
//! tutorial's setup as API calls.
//!
//! Each test binary uses a different subset, hence the `dead_code` allowance.
#![allow(dead_code)]

pub mod cluster;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN_KEY: &str = "test-admin-key";
pub const TENANT: &str = "default";

/// A parsed HTTP/1.1 response.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    /// Lower-cased names, in the order received.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(n, _)| *n == name).map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; panics with the status and body when it is not JSON.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("status {}: body is not JSON ({e}): {}", self.status, self.text()))
    }

    /// `status` and one-line body, for assertion messages.
    pub fn brief(&self) -> String {
        let text = self.text();
        let cut: String = text.chars().take(400).collect();
        format!("{} {}", self.status, cut)
    }

    /// Asserts the status, showing the body when it differs; returns the JSON body (or
    /// `Null` for an empty one).
    #[track_caller]
    pub fn expect(&self, status: u16) -> Value {
        assert_eq!(self.status, status, "unexpected status; body: {}", self.text());
        if self.body.is_empty() {
            Value::Null
        } else {
            self.json()
        }
    }

    /// Asserts an error envelope `{"error": {"code", "message", "status"}}` with this status and
    /// code; returns the message.
    #[track_caller]
    pub fn expect_error(&self, status: u16, code: &str) -> String {
        let body = self.expect(status);
        let error = &body["error"];
        assert_eq!(error["code"], code, "error code; body: {body}");
        assert_eq!(error["status"], status, "error.status; body: {body}");
        let message = error["message"].as_str().unwrap_or_else(|| panic!("error.message missing: {body}"));
        assert!(!message.is_empty(), "empty error message: {body}");
        message.to_string()
    }
}

/// Sends raw request bytes on a fresh connection and reads the response to EOF.
pub async fn raw(addr: SocketAddr, request: &[u8]) -> Reply {
    let mut stream = TcpStream::connect(addr).await.expect("connect to the test server");
    stream.write_all(request).await.expect("write the request");
    let mut bytes = Vec::new();
    stream.read_to_end(&mut bytes).await.expect("read the response");
    parse(&bytes, !request.starts_with(b"HEAD "))
}

/// Parses one response and asserts it carries an `x-request-id` header (every response must).
pub fn parse_reply(bytes: &[u8]) -> Reply {
    parse(bytes, true)
}

/// `has_body` is false for responses to `HEAD`, which carry headers only.
fn parse(bytes: &[u8], has_body: bool) -> Reply {
    let head_end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response head in {:?}", String::from_utf8_lossy(bytes)))
        + 4;
    let head = std::str::from_utf8(&bytes[..head_end]).expect("response head is ASCII");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    assert!(status_line.starts_with("HTTP/1.1 "), "bad status line {status_line:?}");
    let status = status_line.split(' ').nth(1).and_then(|s| s.parse().ok()).expect("numeric status");
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &bytes[head_end..];
    let find = |name: &str| headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
    let body = if !has_body {
        assert!(rest.is_empty(), "a HEAD response with a body");
        Vec::new()
    } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(length) = find("content-length") {
        let length: usize = length.parse().expect("numeric content-length");
        assert!(rest.len() >= length, "body shorter ({}) than content-length {length}", rest.len());
        rest[..length].to_vec()
    } else {
        rest.to_vec()
    };
    let reply = Reply { status, headers, body };
    let request_id = reply.header("x-request-id").unwrap_or_default();
    assert!(!request_id.is_empty(), "response without x-request-id: {} {:?}", reply.brief(), reply.headers);
    reply
}

fn dechunk(mut rest: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&rest[..line_end]).expect("chunk size is ASCII");
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16).expect("hex chunk size");
        rest = &rest[line_end + 2..];
        if size == 0 {
            return body;
        }
        body.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// Builds request bytes: the given headers, `Host`, `Connection: close`, and a
/// `Content-Length` for the body.
pub fn build_request(method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Vec<u8> {
    let mut out = format!("{method} {path} HTTP/1.1\r\nHost: arbiter.test\r\nConnection: close\r\n");
    for (name, value) in headers {
        out.push_str(&format!("{name}: {value}\r\n"));
    }
    if let Some(body) = body {
        out.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    out.push_str("\r\n");
    let mut bytes = out.into_bytes();
    if let Some(body) = body {
        bytes.extend_from_slice(body);
    }
    bytes
}

/// An API caller: an address, an optional key, and headers sent with every request.
#[derive(Debug, Clone)]
pub struct Client {
    pub addr: SocketAddr,
    pub key: Option<String>,
    pub headers: Vec<(String, String)>,
}

impl Client {
    pub fn new(addr: SocketAddr, key: Option<&str>) -> Client {
        Client { addr, key: key.map(str::to_string), headers: Vec::new() }
    }

    /// The same caller with another key (or none).
    pub fn with_key(&self, key: Option<&str>) -> Client {
        Client { addr: self.addr, key: key.map(str::to_string), headers: self.headers.clone() }
    }

    /// The same caller, also sending `name: value`.
    pub fn with_header(&self, name: &str, value: &str) -> Client {
        let mut c = self.clone();
        c.headers.push((name.to_string(), value.to_string()));
        c
    }

    /// Any request; adds `X-API-Key` (when the client has a key) and the client's headers.
    pub async fn send(&self, method: &str, path: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
        let mut all: Vec<(&str, &str)> = Vec::new();
        if let Some(key) = &self.key {
            all.push(("X-API-Key", key));
        }
        all.extend(self.headers.iter().map(|(n, v)| (n.as_str(), v.as_str())));
        all.extend_from_slice(headers);
        raw(self.addr, &build_request(method, path, &all, body)).await
    }

    pub async fn json(&self, method: &str, path: &str, body: &Value) -> Reply {
        let bytes = serde_json::to_vec(body).expect("serialise");
        self.send(method, path, &[("Content-Type", "application/json")], Some(&bytes)).await
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.send("GET", path, &[], None).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.send("DELETE", path, &[], None).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.json("POST", path, body).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Reply {
        self.json("PUT", path, body).await
    }

    /// POST that must answer 201; returns the body.
    pub async fn create(&self, path: &str, body: &Value) -> Value {
        let reply = self.post(path, body).await;
        assert_eq!(reply.status, 201, "POST {path}: {}", reply.text());
        reply.json()
    }
}

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// A fresh, unique folder under the system temp dir (not created).
pub fn temp_path(tag: &str) -> PathBuf {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("arbiter-{tag}-{}-{n}-{nanos}", std::process::id()))
}

/// A fresh folder under the system temp dir, removed when the guard drops (also when
/// the test panics).
pub fn temp_dir(tag: &str) -> tempfile::TempDir {
    tempfile::Builder::new().prefix(&format!("arbiter-{tag}-")).tempdir().unwrap()
}

/// A real server on `127.0.0.1:0`, with its own data folder and no plugins folder.
pub struct TestServer {
    pub addr: SocketAddr,
    /// An admin client of the default tenant.
    pub admin: Client,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start() -> TestServer {
        TestServer::start_in(temp_path("http")).await
    }

    /// Stops the server and starts a new one on the same data folder.
    pub async fn restart(mut self) -> TestServer {
        let dir = std::mem::take(&mut self.dir);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task does not panic").expect("server stops cleanly");
        }
        TestServer::start_in(dir).await
    }

    async fn start_in(dir: PathBuf) -> TestServer {
        let config = arbiter::serve::Config {
            listen: "127.0.0.1:0".parse().expect("address"),
            data: dir.join("data"),
            plugins: dir.join("no-plugins-here"),
            tenant: TENANT.into(),
            admin_key: Some(ADMIN_KEY.into()),
            pepper: Some("test-pepper".into()),
            // Tests train on demand (POST …/train) so results do not depend on timing.
            train_interval: None,
            slow_request: std::time::Duration::from_millis(arbiter::serve::DEFAULT_SLOW_REQUEST_MS),
            retention: std::time::Duration::from_secs(arbiter::serve::DEFAULT_RETENTION_DAYS * 86_400),
            cluster: None,
        };
        // After a restart in the same process, sled's background writers may hold the
        // folder's lock for a moment longer than the store: retry briefly.
        let mut attempts = 0;
        let started = loop {
            match arbiter::serve::start(&config).await {
                Ok(started) => break started,
                Err(e) if attempts < 50 && e.to_string().contains("could not acquire lock") => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => panic!("server starts: {e}"),
            }
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind port 0");
        let addr = listener.local_addr().expect("local address");
        let (stop, stopped) = oneshot::channel::<()>();
        let shutdown = async {
            let _ = stopped.await;
        };
        let task = tokio::spawn(arbiter::serve::run(started, listener, shutdown));
        TestServer { addr, admin: Client::new(addr, Some(ADMIN_KEY)), dir, stop: Some(stop), task: Some(task) }
    }

    /// A client of this server with `key` (or none).
    pub fn client(&self, key: Option<&str>) -> Client {
        Client::new(self.addr, key)
    }

    /// Stops the server and keeps its data folder, returned for the caller to use and remove.
    pub async fn stop_keeping_data(mut self) -> PathBuf {
        let dir = std::mem::take(&mut self.dir);
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task does not panic").expect("server stops cleanly");
        }
        dir
    }

    /// The data folder the server uses.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server (in-flight requests finish), then removes its data folder.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task does not panic").expect("server stops cleanly");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if !self.dir.as_os_str().is_empty() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Ids created by [`tutorial_setup`].
#[derive(Debug, Clone)]
pub struct Tutorial {
    pub schema: String,
    pub savings: String,
    pub card: String,
    pub wealth: String,
    pub mortgage: String,
    pub rules: Vec<String>,
    pub channels: Vec<String>,
    pub flow: String,
}

/// The tutorial's schema body, as `arbiter demo` and the engine tests use it.
pub fn customer_schema() -> Value {
    serde_json::from_str(arbiter::demo::SCHEMA).expect("the tutorial schema is JSON")
}

pub fn offer(name: &str, priority: u32, business_value: u32, revenue: u32) -> Value {
    json!({"name": name, "status": "active", "category": "cross-sell", "priority": priority,
           "businessValue": business_value, "revenueValue": revenue})
}

pub fn rule(name: &str, offer_id: &str, attribute: &str, operator: &str, value: Value) -> Value {
    json!({"name": name, "ruleType": "attribute_condition", "scope": "offer", "scopeId": offer_id,
           "stage": "eligibility", "config": {"attribute": attribute, "operator": operator, "value": value}})
}

/// The tutorial's flow (draftConfig version 2) with the given formula weights.
pub fn flow_spec(key: &str, schema_id: &str, formula: Value) -> Value {
    json!({
        "key": key,
        "name": format!("Flow {key}"),
        "draftConfig": {
            "version": 2,
            "flowConfig": {"experiment": {"enabled": true, "holdoutPercent": 10, "controlGroupAction": "no_offers"}},
            "nodes": [
                {"id": "inv", "type": "inventory", "phase": 1, "position": 0,
                 "config": {"scope": "all", "includeStatuses": ["active"]}},
                {"id": "enr", "type": "enrich", "phase": 1, "position": 1,
                 "config": {"sources": [{"schemaId": schema_id, "lookupKey": "customer_id",
                    "fields": ["tier", "tenureMonths", "hasChecking", "hasSavings", "hasCreditCard",
                               "hasMortgage", "hasBrokerage", "avgMonthlyBalance"]}]}},
                {"id": "qual", "type": "qualify", "phase": 1, "position": 2, "config": {"mode": "all"}},
                {"id": "cp", "type": "contact_policy", "phase": 1, "position": 3, "config": {"mode": "all"}},
                {"id": "score", "type": "score", "phase": 2, "position": 4,
                 "config": {"method": "formula", "formula": formula}},
                {"id": "rank", "type": "rank", "phase": 2, "position": 5,
                 "config": {"method": "topN", "maxCandidates": 5}},
                {"id": "out", "type": "response", "phase": 3, "position": 6,
                 "config": {"responseFormat": "standard"}}
            ]
        }
    })
}

pub fn tutorial_formula() -> Value {
    json!({"propensityWeight": 0.4, "relevanceWeight": 0.15, "impactWeight": 0.35,
           "emphasisWeight": 0.1, "upliftWeight": 0.5})
}

/// The tutorial's customer, who should get the card (rank 1) and savings (rank 2).
pub fn tutorial_customer(id: &str) -> Value {
    json!({"customer_id": id, "tenureMonths": 36, "tier": "premium", "hasChecking": true, "hasSavings": false,
           "hasCreditCard": false, "hasMortgage": true, "hasBrokerage": false, "avgMonthlyBalance": 32000})
}

/// Tutorial steps 1-5 (schema, offers, rules, channels, flow `cross-sell`, publish) plus the
/// customer row `cust_42`, through `api`.
pub async fn tutorial_setup(api: &Client) -> Tutorial {
    let schema = api.create("/api/v1/schemas", &customer_schema()).await["id"].as_str().expect("schema id").to_string();
    let mut offer_ids = Vec::new();
    for (name, p, bv, rv) in [
        ("High-yield savings", 70, 40, 40),
        ("Rewards credit card", 80, 80, 90),
        ("Wealth-management account", 95, 95, 250),
        ("Mortgage pre-approval", 90, 90, 500),
    ] {
        let created = api.create("/api/v1/offers", &offer(name, p, bv, rv)).await;
        offer_ids.push(created["id"].as_str().expect("offer id").to_string());
    }
    let [savings, card, wealth, mortgage] = <[String; 4]>::try_from(offer_ids).expect("four offers");
    let rule_specs = [
        rule("Savings — has checking", &savings, "customer.hasChecking", "eq", json!(true)),
        rule("Savings — no savings yet", &savings, "customer.hasSavings", "eq", json!(false)),
        rule("Card — no card yet", &card, "customer.hasCreditCard", "eq", json!(false)),
        rule("Card — tenure >= 6mo", &card, "customer.tenureMonths", "gte", json!(6)),
        rule("Wealth — no brokerage yet", &wealth, "customer.hasBrokerage", "eq", json!(false)),
        rule("Wealth — premium tier", &wealth, "customer.tier", "in", json!(["premium", "private"])),
        rule("Wealth — balance >= 50k", &wealth, "customer.avgMonthlyBalance", "gte", json!(50000)),
        rule("Mortgage — none yet", &mortgage, "customer.hasMortgage", "eq", json!(false)),
        rule("Mortgage — tenure >= 24mo", &mortgage, "customer.tenureMonths", "gte", json!(24)),
    ];
    let mut rules = Vec::new();
    for spec in &rule_specs {
        rules.push(api.create("/api/v1/qualification-rules", spec).await["id"].as_str().expect("rule id").to_string());
    }
    let mut channels = Vec::new();
    for ch in ["email", "in_app", "branch"] {
        let spec = json!({"name": ch, "status": "active", "couplingMode": "partial"});
        channels.push(api.create("/api/v1/channels", &spec).await["id"].as_str().expect("channel id").to_string());
    }
    let flow = api.create("/api/v1/decision-flows", &flow_spec("cross-sell", &schema, tutorial_formula())).await;
    let flow = flow["id"].as_str().expect("flow id").to_string();
    let published = api.post("/api/v1/decision-flows/publish", &json!({"id": flow})).await;
    assert_eq!(published.status, 200, "publish: {}", published.text());
    let rows = json!({"rows": [tutorial_customer("cust_42")]});
    api.create(&format!("/api/v1/schemas/{schema}/data"), &rows).await;
    Tutorial { schema, savings, card, wealth, mortgage, rules, channels, flow }
}

/// 600 tutorial customers (`c000`…, tenures spread over 6–115 months) decided for on
/// in_app; treated ones convert on the card two times in three, held-out ones one in
/// five, each conversion worth 90. Returns (held out, treated).
pub async fn measured_traffic(api: &Client, t: &Tutorial) -> (u64, u64) {
    let ids: Vec<String> = (0..600).map(|i| format!("c{i:03}")).collect();
    let rows: Vec<Value> = ids
        .iter()
        .enumerate()
        .map(|(i, id)| {
            let mut row = tutorial_customer(id);
            row["tenureMonths"] = json!(6 + (i * 7) % 110);
            row
        })
        .collect();
    api.create(&format!("/api/v1/schemas/{}/data", t.schema), &json!({"rows": rows})).await;
    let (mut control, mut treated) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        let body = json!({"customerId": id, "channel": "in_app", "decisionFlowKey": "cross-sell"});
        let rec = api.post("/api/v1/recommend", &body).await.expect(200);
        let is_control = rec["controlGroup"] == true;
        if is_control {
            control += 1;
        } else {
            treated += 1;
        }
        let converts = if is_control { i % 5 == 0 } else { i % 3 != 0 };
        if converts {
            let body = json!({"customerId": id, "recommendationId": rec["recommendationId"], "offerId": t.card,
                "outcome": "convert", "conversionValue": 90, "idempotencyKey": format!("m{i}")});
            api.post("/api/v1/respond", &body).await.expect(201);
        }
    }
    (control, treated)
}

/// `POST /recommend` for `customer` on the tutorial flow; asserts 200.
pub async fn recommend(api: &Client, customer: &str) -> Value {
    let body = json!({"customerId": customer, "channel": "in_app", "decisionFlowKey": "cross-sell"});
    api.post("/api/v1/recommend", &body).await.expect(200)
}

/// The real `arbiter serve` binary on `127.0.0.1:0`, run in `cwd` with `args` added, an
/// admin key from `ARBITER_ADMIN_KEY`, and stderr (the log) in `cwd/stderr.log`. Killed
/// on drop.
pub struct BinaryServer {
    pub child: Child,
    pub addr: SocketAddr,
    pub log: PathBuf,
}

impl BinaryServer {
    pub fn start(cwd: &Path, args: &[&str], admin_key: &str) -> BinaryServer {
        BinaryServer::start_with_env(cwd, args, admin_key, &[], None)
    }

    /// As [`BinaryServer::start`], with extra environment variables, and optionally started
    /// under a soft open-files limit (`ulimit -Sn`), as a default shell would give it.
    pub fn start_with_env(
        cwd: &Path,
        args: &[&str],
        admin_key: &str,
        env: &[(&str, &str)],
        soft_nofile: Option<u32>,
    ) -> BinaryServer {
        let log = cwd.join("stderr.log");
        let limit = soft_nofile.map_or(String::new(), |n| format!("ulimit -Sn {n} && "));
        let mut child = Command::new("sh")
            .args(["-c", &format!("{limit}exec \"$0\" \"$@\""), env!("CARGO_BIN_EXE_arbiter")])
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .envs(env.iter().copied())
            .current_dir(cwd)
            .env("ARBITER_ADMIN_KEY", admin_key)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).expect("log file"))
            .spawn()
            .expect("start arbiter serve");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout")).lines();
        let mut addr = None;
        for line in stdout.by_ref().map_while(Result::ok) {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                addr = rest.split_whitespace().next().and_then(|a| a.parse().ok());
                break;
            }
        }
        // Keep reading, so a later line on stdout never meets a closed pipe.
        std::thread::spawn(move || stdout.map_while(Result::ok).for_each(drop));
        let addr = addr.unwrap_or_else(|| panic!("server did not start: {}", std::fs::read_to_string(&log).unwrap()));
        BinaryServer { child, addr, log }
    }

    /// The server's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for BinaryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
