//! The `arbiter` binary as a newcomer meets it: help and version, usage errors, a busy
//! port that must not leave a half-made data folder (and a key nobody saw) behind, and
//! logs that read well when stderr is a file or a log collector.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

/// The binary with no `ARBITER_*` or `RUST_LOG` from the caller's environment.
fn arbiter() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arbiter"));
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("ARBITER_") || name == "RUST_LOG" {
            cmd.env_remove(name);
        }
    }
    cmd
}

fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    std::env::temp_dir().join(format!("arbiter-cli-{tag}-{}-{nanos}", std::process::id()))
}

#[test]
fn help_and_version_exit_0() {
    let version = format!("arbiter {}", env!("CARGO_PKG_VERSION"));
    let cases: &[(&str, &[&str], &str)] = &[
        ("serve --help", &["serve", "--help"], "--listen"),
        ("serve -h", &["serve", "-h"], "--slow-request-ms"),
        ("check --help", &["check", "--help"], "--server"),
        ("check -h", &["check", "-h"], "--data"),
        ("demo --help", &["demo", "--help"], "--explain"),
        ("--help", &["--help"], "serve"),
        ("help serve", &["help", "serve"], "--listen"),
        ("--version", &["--version"], &version),
    ];
    for (name, args, expected) in cases {
        let out = arbiter().args(*args).output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "{name}: {stdout}{}", String::from_utf8_lossy(&out.stderr));
        assert!(stdout.contains(expected), "{name}: `{expected}` missing:\n{stdout}");
    }
}

#[test]
fn bad_usage_exits_2_with_a_message() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("unknown command", &["frobnicate"], "unrecognized subcommand 'frobnicate'"),
        ("no command", &[], "Usage:"),
        ("unknown serve option", &["serve", "--bogus"], "--bogus"),
        ("bad address", &["serve", "--listen", "not-an-address"], "--listen"),
        ("bad interval", &["serve", "--train-interval-secs", "soon"], "--train-interval-secs"),
        ("bad log format", &["serve", "--log-format", "xml"], "xml"),
    ];
    for (name, args, expected) in cases {
        let out = arbiter().args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(stderr.contains(expected), "{name}: `{expected}` missing:\n{stderr}");
    }
}

#[test]
fn a_busy_port_fails_before_the_data_folder_is_made() {
    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = busy.local_addr().unwrap().to_string();
    let dir = temp_dir("busy");
    let data = dir.join("data");
    let out = arbiter()
        .args(["serve", "--listen", &addr, "--plugins"])
        .arg(dir.join("no-plugins"))
        .arg("--data")
        .arg(&data)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "serve on a busy port succeeded: {stderr}");
    assert!(stderr.contains(&addr) && stderr.contains("already in use"), "{stderr}");
    assert!(!data.exists(), "the data folder was created although the port was busy");
    assert!(out.stdout.is_empty(), "nothing (no key) should be printed: {}", String::from_utf8_lossy(&out.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `arbiter serve` in a child process on a free port, its stderr collected line by line.
struct Served {
    child: Child,
    addr: SocketAddr,
    lines: Receiver<String>,
    /// What stdout said up to and including the listening line.
    said: Vec<String>,
    /// Kept open: the server prints after its listening line, and a closed pipe would fail it.
    _stdout: BufReader<ChildStdout>,
    dir: PathBuf,
}

const ADMIN_KEY: &str = "cli-test-admin-key";
const WRONG_KEY: &str = "wrong-key-do-not-log-me";

fn serve(extra: &[&str]) -> Served {
    serve_with(extra, Some(ADMIN_KEY))
}

fn serve_with(extra: &[&str], admin_key: Option<&str>) -> Served {
    let dir = temp_dir("logs");
    let mut cmd = arbiter();
    if let Some(key) = admin_key {
        cmd.env("ARBITER_ADMIN_KEY", key);
    }
    let mut child = cmd
        .args(["serve", "--listen", "127.0.0.1:0", "--train-interval-secs", "0", "--data"])
        .arg(dir.join("data"))
        .arg("--plugins")
        .arg(dir.join("no-plugins"))
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut said = Vec::new();
    let addr = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "serve exited before listening: {said:?}");
        said.push(line.trim_end().to_string());
        if let Some(rest) = line.strip_prefix("arbiter listening on http://") {
            break rest.split_whitespace().next().unwrap().parse().unwrap();
        }
    };
    Served { child, addr, lines, said, _stdout: stdout, dir }
}

impl Served {
    /// A GET with `key`; returns the status line.
    fn get(&self, path: &str, key: &str) -> String {
        let mut stream = TcpStream::connect(self.addr).unwrap();
        write!(stream, "GET {path} HTTP/1.1\r\nHost: t\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n").unwrap();
        let mut reply = String::new();
        stream.read_to_string(&mut reply).unwrap();
        reply.lines().next().unwrap_or_default().to_string()
    }

    /// Waits (up to 10 s) for a stderr line with `needle`, keeping every line seen in `seen`.
    fn wait_for(&self, needle: &str, seen: &mut Vec<String>) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => seen.push(line),
                Err(_) => panic!("no log line with `{needle}` in 10 s; stderr so far:\n{}", seen.join("\n")),
            }
        }
    }

    /// Kills the server; returns every stderr line (those already in `seen` first).
    fn stop(mut self, mut seen: Vec<String>) -> Vec<String> {
        let _ = self.child.kill();
        let _ = self.child.wait();
        seen.extend(self.lines.iter());
        let _ = std::fs::remove_dir_all(&self.dir);
        seen
    }
}

#[test]
fn text_logs_on_a_pipe_have_no_colour_and_name_refused_keys() {
    let served = serve(&["--slow-request-ms", "0"]);
    assert!(served.get("/api/v1/offers", WRONG_KEY).contains(" 401 "));
    let mut seen = Vec::new();
    served.wait_for("authentication failed", &mut seen);
    served.wait_for("slow request", &mut seen);
    let lines = served.stop(seen);
    let all = lines.join("\n");
    assert!(!all.contains("\x1b["), "ANSI escape codes on a pipe:\n{all}");
    assert!(!all.contains(WRONG_KEY), "the presented key was logged:\n{all}");
    let auth = lines.iter().find(|l| l.contains("authentication failed")).unwrap();
    for part in ["WARN", "GET", "/api/v1/offers", "401", "request_id", "unknown API key"] {
        assert!(auth.contains(part), "`{part}` missing from {auth}");
    }
    let slow = lines.iter().find(|l| l.contains("slow request")).unwrap();
    for part in ["WARN", "/api/v1/offers", "status=401", "duration_ms", "request_id"] {
        assert!(slow.contains(part), "`{part}` missing from {slow}");
    }
}

#[test]
fn json_logs_are_one_object_per_line() {
    let served = serve(&["--log-format", "json"]);
    assert!(served.get("/api/v1/offers", WRONG_KEY).contains(" 401 "));
    assert!(served.get("/api/v1/whoami", ADMIN_KEY).contains(" 200 "));
    let mut seen = Vec::new();
    served.wait_for("authentication failed", &mut seen);
    let lines = served.stop(seen);
    assert!(lines.len() >= 2, "expected start-up lines and the refusal: {lines:?}");
    let events: Vec<serde_json::Value> =
        lines.iter().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect();
    let refused = events.iter().find(|e| e["fields"]["message"] == "authentication failed").unwrap();
    assert_eq!(refused["level"], "WARN");
    assert_eq!(refused["fields"]["path"], "/api/v1/offers");
    assert_eq!(refused["fields"]["status"], 401);
    assert!(refused["fields"]["request_id"].as_str().is_some_and(|id| !id.is_empty()), "{refused}");
}

#[test]
fn the_first_run_key_comes_with_how_to_stop_and_how_to_recover() {
    let served = serve_with(&[], None);
    let said = served.said.clone();
    served.stop(Vec::new());
    assert_eq!(said.len(), 3, "{said:#?}");
    assert!(said[0].starts_with("admin API key for tenant `default`"), "{said:#?}");
    for part in ["serve keeps this terminal", "Ctrl-C", "ARBITER_ADMIN_KEY=", "arbiter serve"] {
        assert!(said[1].contains(part), "`{part}` missing from the line after the key: {}", said[1]);
    }
}
