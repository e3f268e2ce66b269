//! A JetStream cluster of `nats-server`s and arbiter nodes over it, on loopback ports of
//! their own, for the cluster tests.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{BinaryServer, Client, ADMIN_KEY};

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A JetStream cluster of `n` `nats-server`s; stopped on drop.
pub struct Nats {
    pub servers: Vec<Child>,
    pub urls: Vec<String>,
}

impl Nats {
    pub fn start(n: usize, dir: &Path) -> Nats {
        let clients: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let routes: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut servers = Vec::new();
        for i in 0..n {
            let others: Vec<String> =
                (0..n).filter(|j| *j != i).map(|j| format!("nats://127.0.0.1:{}", routes[j])).collect();
            let log = std::fs::File::create(dir.join(format!("nats-{i}.log"))).unwrap();
            let server = Command::new("nats-server")
                .args(["-a", "127.0.0.1", "-p", &clients[i].to_string(), "--server_name", &format!("n{i}")])
                .args(["-js", "-sd", dir.join(format!("js-{i}")).to_str().unwrap()])
                .args(["--cluster_name", "arbiter-test", "--cluster", &format!("nats://127.0.0.1:{}", routes[i])])
                .args(["--routes", &others.join(",")])
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("nats-server is needed for the cluster test (.ci/run installs Debian's nats-server)");
            servers.push(server);
        }
        Nats { servers, urls: clients.iter().map(|p| format!("nats://127.0.0.1:{p}")).collect() }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        for s in &mut self.servers {
            let _ = s.kill();
            let _ = s.wait();
        }
    }
}

pub fn node(dir: &Path, name: &str, urls: &[String]) -> BinaryServer {
    node_with_env(dir, name, urls, &[])
}

/// An arbiter node `name` (data in `dir/name`) with extra environment variables.
pub fn node_with_env(dir: &Path, name: &str, urls: &[String], env: &[(&str, &str)]) -> BinaryServer {
    let cwd = dir.join(name);
    std::fs::create_dir_all(&cwd).unwrap();
    let cluster = urls.join(",");
    let args = ["--cluster", &cluster, "--node-id", name, "--train-interval-secs", "0"];
    BinaryServer::start_with_env(&cwd, &args, ADMIN_KEY, env, None)
}

/// The offers of a decision as `(offerId, rank, score)`: what must agree across nodes.
pub fn slate(decision: &Value) -> Vec<(String, u64, String)> {
    decision["decisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["offerId"].as_str().unwrap().into(), d["rank"].as_u64().unwrap(), d["score"].to_string()))
        .collect()
}

/// Polls `check` every 5 ms until it holds; how long that took. Fails after 20 s.
pub async fn until<F: std::future::Future<Output = bool>>(what: &str, mut check: impl FnMut() -> F) -> Duration {
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < Duration::from_secs(20), "{what}: not within 20 s");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    started.elapsed()
}

pub async fn flow_version(api: &Client, flow: &str) -> u64 {
    let reply = api.get(&format!("/api/v1/decision-flows/{flow}")).await;
    if reply.status != 200 {
        return 0;
    }
    reply.json()["version"].as_u64().unwrap_or(0)
}
