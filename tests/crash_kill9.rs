//! An acknowledged write survives `kill -9`: the real binary is killed with SIGKILL at
//! varying moments while clients write, restarted on the same data folder, and every
//! write that was answered 201 must be there — entity writes (sled) and responses (the
//! event log). `ARBITER_KILL_ROUNDS` sets the rounds (default 6; the bench script runs
//! more).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

const KEY: &str = "kill9-admin-key";

struct Server {
    child: Child,
    addr: String,
}

/// A failing assertion must not leave a server running.
impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(data: &std::path::Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_arbiter"))
        .args(["serve", "--listen", "127.0.0.1:0", "--plugins", "/nonexistent-plugins"])
        .arg("--data")
        .arg(data)
        .env("ARBITER_ADMIN_KEY", KEY)
        .env("RUST_LOG", "warn")
        // Hold each group flush back 20 ms: an acknowledgement sent before its flush
        // would then be lost to the kill, so this test would catch it.
        .env("ARBITER_TEST_FLUSH_DELAY_MS", "20")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start arbiter");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let addr = loop {
        let line = lines.next().expect("server exited before listening").expect("read stdout");
        if let Some(rest) = line.split("listening on http://").nth(1) {
            break rest.split_whitespace().next().expect("address").to_string();
        }
    };
    Server { child, addr }
}

/// One request over a fresh connection; returns (status, body).
fn request(addr: &str, method: &str, path: &str, body: &str) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
    Ok((status, body))
}

/// Every offer name the server has, following the pagination cursor.
fn offer_names(addr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut cursor = String::new();
    loop {
        let path = format!("/api/v1/offers?limit=100{cursor}");
        let (status, body) = request(addr, "GET", &path, "").expect("list offers");
        assert_eq!(status, 200, "{body}");
        let page: serde_json::Value = serde_json::from_str(&body).expect("json");
        names.extend(page["data"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap().to_string()));
        match page["pagination"]["cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => return names,
        }
    }
}

/// Four writers send `write(writer, i)` = (name, path, body) requests; a 201 acknowledges
/// `name`. After `deadline`, the first writer to get a 201 kills the server at once — the
/// moment an acknowledgement sent before its flush would be lost.
fn write_then_kill<W>(server: Server, deadline: Instant, write: W) -> Vec<String>
where
    W: Fn(usize, usize) -> (String, String, String) + Send + Sync + 'static,
{
    let addr = server.addr.clone();
    let child = Arc::new(Mutex::new(Some(server)));
    let stop = Arc::new(AtomicBool::new(false));
    let write = Arc::new(write);
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (addr, stop, child, write) = (addr.clone(), stop.clone(), child.clone(), write.clone());
            std::thread::spawn(move || {
                let mut acked = Vec::new();
                for i in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (name, path, body) = write(w, i);
                    match request(&addr, "POST", &path, &body) {
                        Ok((201, _)) => acked.push(name),
                        Ok(_) | Err(_) => break,
                    }
                    if Instant::now() >= deadline {
                        if let Some(mut server) = child.lock().unwrap().take() {
                            server.child.kill().expect("SIGKILL");
                            server.child.wait().expect("reap");
                        }
                        stop.store(true, Ordering::Relaxed);
                    }
                }
                acked
            })
        })
        .collect();
    writers.into_iter().flat_map(|w| w.join().expect("writer")).collect()
}

fn rounds() -> usize {
    std::env::var("ARBITER_KILL_ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(6)
}

/// Kill somewhere between 40 and 400 ms into the writes, varying per round.
fn kill_deadline(seed: u64, round: usize) -> (u64, Instant) {
    let delay = 40 + (seed.wrapping_mul(round as u64 + 1).wrapping_mul(0x9E37_79B9) % 360);
    (delay, Instant::now() + Duration::from_millis(delay))
}

fn seed() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos() as u64
}

#[test]
fn acknowledged_writes_survive_sigkill() {
    let rounds = rounds();
    let tmp = tempfile::Builder::new().prefix("arbiter-kill9-").tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let acknowledged = Arc::new(Mutex::new(Vec::<String>::new()));
    let seed = seed();
    for round in 0..rounds {
        let server = start(&data);
        let (delay, deadline) = kill_deadline(seed, round);
        let mut acked = acknowledged.lock().unwrap();
        acked.extend(write_then_kill(server, deadline, move |w, i| {
            let name = format!("r{round}-w{w}-{i}");
            let body = format!("{{\"name\": \"{name}\", \"status\": \"active\", \"priority\": 50}}");
            (name, "/api/v1/offers".to_string(), body)
        }));
        let restarted = start(&data);
        let started = Instant::now();
        let present: std::collections::HashSet<String> = offer_names(&restarted.addr).into_iter().collect();
        let lost: Vec<&String> = acked.iter().filter(|n| !present.contains(*n)).collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged writes lost, e.g. {:?}",
            lost.len(),
            acked.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!(
            "round {round}: killed after {delay} ms; {} acknowledged writes all present (checked in {:?})",
            acked.len(),
            started.elapsed()
        );
        drop(restarted);
    }
    assert!(acknowledged.lock().unwrap().len() > rounds, "too few writes were acknowledged to mean anything");
}

/// Creates an offer and publishes flow `kill9`, which shows it to everyone.
fn publish_flow(addr: &str) {
    let offer = r#"{"name": "kill9 offer", "status": "active", "priority": 50}"#;
    assert_eq!(request(addr, "POST", "/api/v1/offers", offer).unwrap().0, 201);
    let flow = r#"{"key": "kill9", "name": "Kill9", "draftConfig": {"version": 2, "nodes": [
        {"id": "inv", "type": "inventory"},
        {"id": "score", "type": "score", "config": {"method": "priority_weighted"}},
        {"id": "rank", "type": "rank", "config": {"maxCandidates": 1}}]}}"#;
    let (status, body) = request(addr, "POST", "/api/v1/decision-flows", flow).unwrap();
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"].as_str().unwrap().to_string();
    let (status, body) =
        request(addr, "POST", "/api/v1/decision-flows/publish", &format!("{{\"id\": \"{id}\"}}")).unwrap();
    assert_eq!(status, 200, "{body}");
}

/// Decisions for `n` customers; (customer, recommendation id) each.
fn decisions(addr: &str, round: usize, n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let customer = format!("c{round}-{i}");
            let body = format!("{{\"customerId\": \"{customer}\", \"decisionFlowKey\": \"kill9\"}}");
            let (status, reply) = request(addr, "POST", "/api/v1/recommend", &body).unwrap();
            assert_eq!(status, 200, "{reply}");
            let reply: serde_json::Value = serde_json::from_str(&reply).unwrap();
            (customer, reply["recommendationId"].as_str().unwrap().to_string())
        })
        .collect()
}

fn respond_body(customer: &str, recommendation: &str, key: &str) -> String {
    format!(
        "{{\"customerId\": \"{customer}\", \"recommendationId\": \"{recommendation}\", \"rank\": 1, \
         \"outcome\": \"click\", \"idempotencyKey\": \"{key}\"}}"
    )
}

/// Responses are event-log records: each one answered 201 before the kill is found after the
/// restart (sending its idempotency key again answers 200 with `duplicate: true`).
#[test]
fn acknowledged_responses_survive_sigkill() {
    let rounds = rounds();
    let tmp = tempfile::Builder::new().prefix("arbiter-kill9-respond-").tempdir().unwrap();
    let data = tmp.path().to_path_buf();
    let seed = seed();
    let mut acknowledged: Vec<String> = Vec::new();
    let mut bodies: std::collections::HashMap<String, String> = std::collections::HashMap::new();
    let mut server = start(&data);
    publish_flow(&server.addr);
    for round in 0..rounds {
        let decided = Arc::new(decisions(&server.addr, round, 100));
        // Decisions are written to their segment within 200 ms (not synced: a kill of the
        // process, unlike a power loss, keeps what was written).
        std::thread::sleep(Duration::from_millis(500));
        let (delay, deadline) = kill_deadline(seed, round);
        let of_round = decided.clone();
        let acked = write_then_kill(server, deadline, move |w, i| {
            let (customer, id) = &of_round[(w * 31 + i) % of_round.len()];
            let key = format!("r{round}-w{w}-{i}");
            let body = respond_body(customer, id, &key);
            (format!("{key} {body}"), "/api/v1/respond".to_string(), body)
        });
        for named in acked {
            let (key, body) = named.split_once(' ').unwrap();
            bodies.insert(key.to_string(), body.to_string());
            acknowledged.push(key.to_string());
        }
        server = start(&data);
        let lost: Vec<&String> = acknowledged
            .iter()
            .filter(|key| {
                let (status, reply) = request(&server.addr, "POST", "/api/v1/respond", &bodies[*key]).unwrap();
                !(status == 200 && reply.contains("\"duplicate\":true"))
            })
            .collect();
        assert!(
            lost.is_empty(),
            "round {round}: {} of {} acknowledged responses lost, e.g. {:?}",
            lost.len(),
            acknowledged.len(),
            &lost[..lost.len().min(5)]
        );
        eprintln!("round {round}: killed after {delay} ms; {} acknowledged responses all present", acknowledged.len());
    }
    assert!(acknowledged.len() > rounds, "too few responses were acknowledged to mean anything");
    drop(server);
}
