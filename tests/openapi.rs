//! The OpenAPI document is one a generator can use: it validates as OpenAPI 3.1, every
//! route of the route table is in it with its request and success-response schemas, and
//! a bounded schemathesis run against a real server (tutorial data loaded) finds no
//! response that breaks the document and no 5xx.
//!
//! The validator and schemathesis are Python tools: `.ci/run` installs them; locally,
//! `pip install schemathesis openapi-spec-validator`. Missing tools fail these tests.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{tutorial_setup, TestServer, ADMIN_KEY};

const INSTALL: &str = "pip install schemathesis openapi-spec-validator (as .ci/run does)";

/// Fails, saying how to install, when a Python module is missing.
fn require_python_module(module: &str) {
    let found = Command::new("python3")
        .args(["-c", &format!("import {module}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(found, "python3 module `{module}` is missing: {INSTALL}");
}

async fn document(server: &TestServer) -> Value {
    server.client(None).get("/api/v1/openapi.json").await.expect(200)
}

#[tokio::test]
async fn the_document_validates_as_openapi_3_1() {
    require_python_module("openapi_spec_validator");
    let server = TestServer::start().await;
    let doc = document(&server).await;
    assert_eq!(doc["openapi"], "3.1.0");
    let path = support::temp_path("openapi").with_extension("json");
    std::fs::write(&path, serde_json::to_vec(&doc).unwrap()).unwrap();
    let script = "import sys, json\n\
        from openapi_spec_validator import validate\n\
        from openapi_spec_validator.validation import OpenAPIV31SpecValidator\n\
        validate(json.load(open(sys.argv[1])), cls=OpenAPIV31SpecValidator)\n";
    let out = Command::new("python3").args(["-c", script]).arg(&path).output().expect("run python3");
    let _ = std::fs::remove_file(&path);
    assert!(out.status.success(), "not valid OpenAPI 3.1:\n{}", String::from_utf8_lossy(&out.stderr));
    server.stop().await;
}

/// Every route: a request body schema where it takes a body, a schema for each success
/// status (none for 204), and the error envelope for 4XX/5XX.
#[tokio::test]
async fn every_route_has_its_request_and_response_schemas() {
    let server = TestServer::start().await;
    let doc = document(&server).await;
    let mut problems = Vec::new();
    for row in arbiter::api::routes::table() {
        let (method, path, route) = (row.method, row.path, row.route);
        let name = format!("{method} {path} ({})", route.operation_id());
        let op = &doc["paths"][path][method.to_lowercase()];
        if !op.is_object() {
            problems.push(format!("{name}: missing"));
            continue;
        }
        let contract = route.contract();
        let takes_body = !matches!(contract.request, arbiter::api::routes::Body::None);
        let content = &op["requestBody"]["content"];
        let has_schema =
            content.as_object().is_some_and(|c| c.values().all(|m| m["schema"].is_object()) && !c.is_empty());
        if takes_body != has_schema {
            problems.push(format!("{name}: takes a body: {takes_body}, request schema: {has_schema}"));
        }
        for status in contract.statuses {
            let reply = &op["responses"][status.to_string()];
            let documented = match status {
                204 => reply.is_object() && reply.get("content").is_none(),
                _ => reply["content"]
                    .as_object()
                    .is_some_and(|c| !c.is_empty() && c.values().all(|m| m["schema"].is_object())),
            };
            if !documented {
                problems.push(format!("{name}: success {status} is not documented with its schema: {reply}"));
            }
        }
        for status in ["400", "4XX", "5XX"] {
            if op["responses"][status]["$ref"] != "#/components/responses/Error" {
                problems.push(format!("{name}: {status} is not the error envelope"));
            }
        }
        for (param, kind) in contract.query.iter().map(|q| (q.name, q.kind)) {
            let listed = op["parameters"].as_array().is_some_and(|ps| {
                ps.iter().any(|p| p["name"] == param && p["in"] == "query" && p["schema"]["type"] == kind)
            });
            if !listed {
                problems.push(format!("{name}: query parameter `{param}` is not listed"));
            }
        }
    }
    let schemas = doc["components"]["schemas"].as_object().expect("components/schemas");
    let text = doc.to_string();
    for reference in text.split("\"$ref\":\"").skip(1).filter_map(|r| r.split('"').next()) {
        let Some(name) = reference.strip_prefix("#/components/schemas/") else { continue };
        if !schemas.contains_key(name) {
            problems.push(format!("dangling $ref {reference}"));
        }
    }
    assert!(problems.is_empty(), "{} problem(s):\n{}", problems.len(), problems.join("\n"));
    server.stop().await;
}

/// Every schemathesis check except `positive_data_acceptance`: a body can satisfy the
/// schema and still be refused on meaning (an id that names nothing, weights that do not
/// sum to 1, a rollback to a version that does not exist), which a JSON Schema cannot say.
const EXCLUDED_CHECKS: &str = "positive_data_acceptance";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_no_failures() {
    require_python_module("schemathesis");
    let server = TestServer::start().await;
    tutorial_setup(&server.admin).await;
    let url = format!("http://{}/api/v1/openapi.json", server.addr);
    let base = format!("http://{}", server.addr);
    let report = support::temp_path("schemathesis");
    let args: Vec<String> = [
        "run",
        &url,
        "--url",
        &base,
        "--checks",
        "all",
        "--exclude-checks",
        EXCLUDED_CHECKS,
        "--max-examples",
        "8",
        "--seed",
        "1",
        // One worker: with two, CPython 3.11's `ast.parse` in hypothesis's threads now and
        // then fails ("AST constructor recursion depth mismatch"), a runtime error of the
        // tool's that failed the run.
        "--workers",
        "1",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--request-timeout",
        "10",
        "--suppress-health-check",
        "all",
        "--no-shrink",
        "--header",
        &format!("X-API-Key: {ADMIN_KEY}"),
        "--report-dir",
        report.to_str().unwrap(),
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let started = Instant::now();
    // Run in the report folder: schemathesis keeps a cache in its working directory.
    std::fs::create_dir_all(&report).expect("create the report folder");
    let cwd = report.clone();
    let out = tokio::task::spawn_blocking(move || run_bounded("schemathesis", &args, &cwd, Duration::from_secs(240)))
        .await
        .expect("schemathesis runner");
    let _ = std::fs::remove_dir_all(&report);
    let text = format!("{}\n{}", out.1, out.2);
    assert!(out.0, "schemathesis reported failures ({:?}):\n{}", started.elapsed(), tail(&text, 12_000));
    server.stop().await;
}

/// Runs a command with a deadline; (success, stdout, stderr). A run over the deadline is
/// killed and counts as a failure. Output goes to files, so a chatty child never blocks
/// on a full pipe.
fn run_bounded(program: &str, args: &[String], cwd: &std::path::Path, limit: Duration) -> (bool, String, String) {
    let base = support::temp_path("child");
    let (out_path, err_path) = (base.with_extension("out"), base.with_extension("err"));
    let file = |p: &std::path::Path| std::fs::File::create(p).expect("create an output file");
    let mut child = Command::new(program)
        .args(args)
        .current_dir(cwd)
        .env("NO_COLOR", "1")
        .stdout(file(&out_path))
        .stderr(file(&err_path))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run `{program}` ({e}): {INSTALL}"));
    let start = Instant::now();
    let (success, note) = loop {
        match child.try_wait().expect("wait for the child") {
            Some(status) => break (status.success(), String::new()),
            None if start.elapsed() > limit => {
                let _ = child.kill();
                let _ = child.wait();
                break (false, format!("killed after {limit:?}\n"));
            }
            None => std::thread::sleep(Duration::from_millis(200)),
        }
    };
    let read = |p: &std::path::Path| std::fs::read_to_string(p).unwrap_or_default();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    let _ = std::fs::remove_file(&out_path);
    let _ = std::fs::remove_file(&err_path);
    (success, note + &stdout, stderr)
}

fn tail(text: &str, max: usize) -> &str {
    let mut start = text.len().saturating_sub(max);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    &text[start..]
}
