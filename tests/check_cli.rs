//! `arbiter check` as a rule author runs it: exit codes, located diagnostics, the summary
//! line, and the three things a file can be checked against — nothing (syntax only), a
//! stopped server's data folder (`--data`), a running server (`--server`) — plus a JSON
//! tenant description (`--context`).

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::{temp_path, tutorial_setup, TestServer, ADMIN_KEY};

const PLUGINS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins");
const CONTEXT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/context.json");
const NOTE: &str = "note: no tenant given (--data DIR, --server URL or --context FILE): \
offers, categories, channels, flows and attributes were not checked";

/// Three mistakes only a tenant reveals: an offer name typo, an unknown attribute, weights
/// that do not sum to 1 (the last one needs no tenant).
const THREE_MISTAKES: &str = "rule \"a\" for offer \"Rewards credit crad\" {\n    customer.hasCreditCard == false\n}\n\
     rule \"b\" {\n    customer.tenureMonth >= 6\n}\n\
     score for flow \"cross-sell\" {\n    weights propensity 0.5, impact 0.4\n}\n";

fn arbiter() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_arbiter"));
    cmd.env_remove("ARBITER_API_KEY").env_remove("ARBITER_TENANT_ID");
    cmd
}

/// A folder with one file `name` holding `source`; removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str, source: &str) -> Scratch {
        let dir = temp_path("check");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), source).unwrap();
        Scratch(dir)
    }

    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn text(out: &Output) -> (String, String) {
    (String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs the binary off the async runtime (a test server may be serving on it).
async fn run(args: Vec<std::ffi::OsString>) -> Output {
    tokio::task::spawn_blocking(move || arbiter().args(args).output().unwrap()).await.unwrap()
}

fn args(parts: &[&dyn AsRef<std::ffi::OsStr>]) -> Vec<std::ffi::OsString> {
    parts.iter().map(|p| p.as_ref().to_os_string()).collect()
}

/// One row: what is checked, how, and what must come out.
struct Case {
    name: &'static str,
    /// The file's source (written as `case.rules`); `None` checks `plugins/`.
    source: Option<&'static str>,
    flags: &'static [&'static str],
    exit: i32,
    stdout: &'static [&'static str],
    stderr: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "plugins/ without a tenant: syntax only, clean, and says what it skipped",
        source: None,
        flags: &[],
        exit: 0,
        stdout: &["checked 1 file, 4 rules, 0 score blocks: ok"],
        stderr: &[NOTE],
    },
    Case {
        name: "plugins/ against the tutorial's context",
        source: None,
        flags: &["--context", CONTEXT],
        exit: 0,
        stdout: &["checked 1 file, 4 rules, 0 score blocks: ok"],
        stderr: &[],
    },
    Case {
        name: "a syntax error without a tenant",
        source: Some("rule \"a\" {\n    customer.x >= \n}\n"),
        flags: &[],
        exit: 1,
        stdout: &["error[", "case.rules:", "checked 1 file: 1 error"],
        stderr: &[NOTE],
    },
    Case {
        name: "without a tenant, only the weights are wrong",
        source: Some(THREE_MISTAKES),
        flags: &[],
        exit: 1,
        stdout: &["error[E109]", "case.rules:8:13", "checked 1 file: 1 error"],
        stderr: &[NOTE],
    },
    Case {
        name: "against the context, all three mistakes",
        source: Some(THREE_MISTAKES),
        flags: &["--context", CONTEXT],
        exit: 1,
        stdout: &[
            "error[E102]",
            "case.rules:1:14",
            "did you mean \"Rewards credit card\"?",
            "error[E201]",
            "case.rules:5:5",
            "error[E109]",
            "checked 1 file: 3 errors",
        ],
        stderr: &[],
    },
    Case {
        name: "a warning keeps the exit 0",
        source: Some("rule \"always\" {\n    1 < 2\n}\n"),
        flags: &[],
        exit: 0,
        stdout: &["checked 1 file, 1 rule, 0 score blocks: ok"],
        stderr: &[],
    },
];

#[test]
fn table() {
    for case in CASES {
        let scratch = case.source.map(|s| Scratch::new("case.rules", s));
        let path = scratch.as_ref().map_or(PathBuf::from(PLUGINS), |s| s.file("case.rules"));
        let out = arbiter().arg("check").args(case.flags).arg(&path).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(case.exit), "{}:\n{stdout}{stderr}", case.name);
        for want in case.stdout {
            assert!(stdout.contains(want), "{}: `{want}` missing from stdout:\n{stdout}", case.name);
        }
        for want in case.stderr {
            assert!(stderr.contains(want), "{}: `{want}` missing from stderr:\n{stderr}", case.name);
        }
        if case.flags.contains(&"--context") {
            assert!(!stderr.contains("note: no tenant"), "{}: {stderr}", case.name);
        }
    }
}

#[test]
fn json_format_prints_only_located_diagnostics() {
    let scratch = Scratch::new("bad.rules", THREE_MISTAKES);
    let out = arbiter()
        .args(["check", "--format", "json", "--context", CONTEXT])
        .arg(scratch.file("bad.rules"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let got: Vec<(String, u64, u64)> = diags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_string(), d["line"].as_u64().unwrap(), d["column"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, [("E102".into(), 1, 14), ("E201".into(), 5, 5), ("E109".into(), 8, 13)]);
    assert!(text(&out).1.contains("checked 1 file: 3 errors"), "the summary goes to stderr");
}

#[test]
fn bad_usage_exits_2() {
    let cases: &[(&str, &[&str], &str)] = &[
        ("no path", &["check"], "PATH"),
        ("missing context file", &["check", "--context", "/nonexistent.json", PLUGINS], "/nonexistent.json"),
        ("two tenants", &["check", "--data", "/tmp", "--server", "http://127.0.0.1:1", PLUGINS], "--server"),
        ("server without a key", &["check", "--server", "http://127.0.0.1:1", PLUGINS], "ARBITER_API_KEY"),
        ("https server", &["check", "--server", "https://x", "--key", "k", PLUGINS], "https"),
        ("not a data folder", &["check", "--data", PLUGINS, PLUGINS], "not an arbiter data folder"),
        ("nobody listening", &["check", "--server", "http://127.0.0.1:1", "--key", "k", PLUGINS], "cannot reach"),
    ];
    for (name, args, expected) in cases {
        let out = arbiter().args(*args).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(2), "{name}: {stdout}{stderr}");
        assert!(stderr.contains(expected), "{name}: `{expected}` missing:\n{stderr}");
    }
}

/// The typo'd offer and a clean file, against a real tenant: what both `--data` and
/// `--server` must report.
fn assert_real_tenant_checks(bad: &Output, clean: &Output, how: &str) {
    let (stdout, stderr) = text(bad);
    assert_eq!(bad.status.code(), Some(1), "{how}, bad file:\n{stdout}{stderr}");
    for want in [
        "error[E102]: unknown offer \"Rewards credit crad\"",
        "bad.rules:1:14",
        "did you mean \"Rewards credit card\"?",
    ] {
        assert!(stdout.contains(want), "{how}: `{want}` missing:\n{stdout}");
    }
    assert!(stdout.contains("checked 1 file: 1 error"), "{how}:\n{stdout}");
    assert!(!stderr.contains("note: no tenant"), "{how}: {stderr}");
    let (stdout, stderr) = text(clean);
    assert_eq!(clean.status.code(), Some(0), "{how}, plugins/:\n{stdout}{stderr}");
    assert!(stdout.contains("checked 1 file, 4 rules, 0 score blocks: ok"), "{how}:\n{stdout}");
}

const TYPO: &str = "rule \"a\" for offer \"Rewards credit crad\" {\n    customer.hasCreditCard == false\n}\n";

#[tokio::test]
async fn data_checks_against_a_stopped_servers_tenant() {
    let server = TestServer::start().await;
    tutorial_setup(&server.admin).await;
    let scratch = Scratch::new("bad.rules", TYPO);
    let bad = scratch.file("bad.rules");

    // While the server runs the folder is locked: say so, and point at --server.
    let busy = run(args(&[&"check", &"--data", &server.data_dir(), &bad])).await;
    let (_, stderr) = text(&busy);
    assert_eq!(busy.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("in use") && stderr.contains("--server"), "{stderr}");

    let dir = server.stop_keeping_data().await;
    let data = dir.join("data");
    let bad_out = run(args(&[&"check", &"--data", &data, &bad])).await;
    let clean_out = run(args(&[&"check", &"--data", &data, &PLUGINS])).await;
    let unknown = run(args(&[&"check", &"--data", &data, &"--tenant", &"nobody", &bad])).await;
    let _ = std::fs::remove_dir_all(&dir);
    assert_real_tenant_checks(&bad_out, &clean_out, "--data");
    assert_eq!(unknown.status.code(), Some(2));
    assert!(text(&unknown).1.contains("no tenant `nobody`"), "{}", text(&unknown).1);
}

#[tokio::test]
async fn server_checks_against_a_running_tenant_and_installs_nothing() {
    let server = TestServer::start().await;
    tutorial_setup(&server.admin).await;
    let scratch = Scratch::new("bad.rules", TYPO);
    let url = format!("http://{}", server.addr);
    let bad = run(args(&[&"check", &"--server", &url, &"--key", &ADMIN_KEY, &scratch.file("bad.rules")])).await;
    let clean = run(args(&[&"check", &"--server", &url, &"--key", &ADMIN_KEY, &PLUGINS])).await;
    assert_real_tenant_checks(&bad, &clean, "--server");

    // A wrong key is a usage problem (exit 2) that names the refusal.
    let refused = run(args(&[&"check", &"--server", &url, &"--key", &"nope", &PLUGINS])).await;
    assert_eq!(refused.status.code(), Some(2));
    assert!(text(&refused).1.contains("401"), "{}", text(&refused).1);

    // The endpoint answers 200 with the diagnostics, and nothing was installed.
    let reply = server
        .admin
        .send("POST", "/api/v1/plugins/bad.rules/check", &[("Content-Type", "text/plain")], Some(TYPO.as_bytes()))
        .await;
    let body = reply.expect(200);
    assert_eq!((body["name"].as_str(), body["ok"].as_bool()), (Some("bad.rules"), Some(false)), "{body}");
    assert_eq!(body["diagnostics"][0]["code"], "E102", "{body}");
    assert_eq!(
        (body["diagnostics"][0]["line"].as_u64(), body["diagnostics"][0]["column"].as_u64()),
        (Some(1), Some(14))
    );
    let source = std::fs::read_to_string(Path::new(PLUGINS).join("cross_sell.rules")).unwrap();
    let reply = server
        .admin
        .send(
            "POST",
            "/api/v1/plugins/cross_sell.rules/check",
            &[("Content-Type", "text/plain")],
            Some(source.as_bytes()),
        )
        .await;
    let body = reply.expect(200);
    assert_eq!((body["ok"].as_bool(), body["rules"].as_u64(), body["scores"].as_u64()), (Some(true), Some(4), Some(0)));
    assert_eq!(server.admin.get("/api/v1/plugins").await.expect(200), serde_json::json!([]), "check installed a file");
    // Viewers may not check (as they may not install).
    let viewer =
        server.admin.post("/api/v1/keys", &serde_json::json!({"name": "v", "role": "viewer"})).await.expect(201);
    let viewer = server.client(viewer["apiKey"].as_str());
    let reply = viewer.send("POST", "/api/v1/plugins/x.rules/check", &[], Some(b"")).await;
    reply.expect_error(403, "FORBIDDEN");
    server.stop().await;
}
