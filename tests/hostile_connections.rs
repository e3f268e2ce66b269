//! Clients that open connections and stall cannot lock others out: thousands of stalled
//! connections leave healthy clients working, stalled ones are closed after the idle
//! timeout, and past the connection limit a new connection gets a 503.
//!
//! The server runs as its own process (the real binary): its descriptors and this test's
//! client sockets then count against separate open-file limits.

mod support;

use std::time::{Duration, Instant};

use support::{BinaryServer, Client};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const KEY: &str = "hostile-admin-key";

/// A server of its own (folder removed on drop) with extra environment and, optionally,
/// a soft open-files limit.
struct Hostile {
    server: BinaryServer,
    work: std::path::PathBuf,
}

impl Hostile {
    fn start(tag: &str, env: &[(&str, &str)], soft_nofile: Option<u32>) -> Hostile {
        let work = support::temp_path(tag);
        std::fs::create_dir_all(&work).unwrap();
        let server =
            BinaryServer::start_with_env(&work, &["--data", "data", "--plugins", "none"], KEY, env, soft_nofile);
        Hostile { server, work }
    }
}

impl Drop for Hostile {
    fn drop(&mut self) {
        let _ = self.server.child.kill();
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// Request headers and the start of a body that never comes.
fn stalled_request() -> String {
    format!(
        "POST /api/v1/offers HTTP/1.1\r\nHost: x\r\nX-API-Key: {KEY}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"name\": \"sta"
    )
}

async fn open_stalled(server: &BinaryServer, n: usize) -> Vec<TcpStream> {
    let request = stalled_request();
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let connect = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(server.addr));
        let mut s =
            connect.await.unwrap_or_else(|_| panic!("connection {i} was not accepted in 5 s")).expect("connect");
        s.write_all(request.as_bytes()).await.expect("write the stalled request");
        open.push(s);
    }
    open
}

/// Whether the server has closed `s` (it may first send an error response).
async fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match tokio::time::timeout(deadline - Instant::now(), s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
            Err(_) => return false,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_stalled_connections_leave_healthy_clients_working() {
    arbiter::http::server::raise_fd_limit();
    // Long enough that none of them times out while they are being opened. Started with
    // a shell's default soft limit of 1,024 open files: the server raises it itself.
    let hostile = Hostile::start("hostile", &[("ARBITER_IDLE_TIMEOUT_MS", "120000")], Some(1024));
    let server = &hostile.server;
    let opened = Instant::now();
    let stalled = open_stalled(server, 10_000).await;
    eprintln!("opened 10,000 stalled connections in {:?}", opened.elapsed());
    let api = Client::new(server.addr, Some(KEY));
    for i in 0..50 {
        let offer = serde_json::json!({"name": format!("healthy {i}"), "status": "active"});
        let healthy = async {
            api.get("/healthz").await.expect(200);
            api.post("/api/v1/offers", &offer).await.expect(201);
        };
        // A locked-out client hangs rather than fails: the bound only turns a hang into a
        // failure (it is liveness, not a latency target).
        tokio::time::timeout(Duration::from_secs(10), healthy).await.expect("a healthy client was locked out");
    }
    drop(stalled);
}

#[tokio::test]
async fn a_stalled_body_is_closed_after_the_idle_timeout() {
    let hostile = Hostile::start("hostile-idle", &[("ARBITER_IDLE_TIMEOUT_MS", "1500")], None);
    let server = &hostile.server;
    let started = Instant::now();
    let mut stalled = open_stalled(server, 20).await;
    for s in stalled.iter_mut() {
        assert!(closed_within(s, Duration::from_secs(10)).await, "a stalled connection was never closed");
    }
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(1400), "closed before the idle timeout: {took:?}");
}

#[tokio::test]
async fn past_the_connection_limit_a_new_connection_gets_503() {
    let hostile = Hostile::start("hostile-cap", &[("ARBITER_MAX_CONNECTIONS", "20")], None);
    let server = &hostile.server;
    let _stalled = open_stalled(server, 20).await;
    // Give the server a moment to accept all of them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let reply = Client::new(server.addr, Some(KEY)).get("/healthz").await;
    let message = reply.expect_error(503, "SERVICE_UNAVAILABLE");
    assert!(message.contains("too many open connections"), "{message}");
}

/// The idle clock stops while a request is handled: a row load that takes far longer
/// than the idle timeout still gets its answer.
#[tokio::test]
async fn a_request_that_takes_longer_than_the_idle_timeout_completes() {
    let hostile = Hostile::start("hostile-long", &[("ARBITER_IDLE_TIMEOUT_MS", "300")], None);
    let server = &hostile.server;
    let api = Client::new(server.addr, Some(KEY));
    let schema = api.create("/api/v1/schemas", &support::customer_schema()).await;
    let rows: Vec<_> =
        (0..60_000).map(|i| serde_json::json!({"customer_id": format!("c{i}"), "tier": "gold"})).collect();
    let started = Instant::now();
    let path = format!("/api/v1/schemas/{}/data", schema["id"].as_str().unwrap());
    let reply = api.post(&path, &serde_json::json!({"rows": rows})).await;
    let took = started.elapsed();
    assert_eq!(reply.expect(201)["inserted"], 60_000);
    assert!(took > Duration::from_millis(300), "the load should outlast the idle timeout to test anything: {took:?}");
}
