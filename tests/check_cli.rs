//! `arbiter check` as a rule author runs it: exit codes and located diagnostics.

use std::process::Command;

fn arbiter() -> Command {
    Command::new(env!("CARGO_BIN_EXE_arbiter"))
}

#[test]
fn plugins_folder_is_clean() {
    let out = arbiter().args(["check", concat!(env!("CARGO_MANIFEST_DIR"), "/plugins")]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
}

#[test]
fn three_mistakes_three_located_diagnostics() {
    let dir = std::env::temp_dir().join(format!("arbiter-check-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.rules");
    std::fs::write(
        &file,
        "rule \"a\" for offer \"Rewards credit crad\" {\n    customer.hasCreditCard == false\n}\n\
         rule \"b\" {\n    customer.tenureMonth >= 6\n}\n\
         score for flow \"cross-sell\" {\n    weights propensity 0.5, impact 0.4\n}\n",
    )
    .unwrap();
    let context = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins/context.json");
    let text = arbiter().args(["check", "--context", context]).arg(&file).output().unwrap();
    assert_eq!(text.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&text.stdout);
    for (code, at) in [("E102", "bad.rules:1:14"), ("E201", "bad.rules:5:5"), ("E109", "bad.rules:8:13")] {
        assert!(stdout.contains(&format!("error[{code}]")), "{code} missing:\n{stdout}");
        assert!(stdout.contains(at), "{at} missing:\n{stdout}");
    }
    assert!(stdout.contains("did you mean \"Rewards credit card\"?"), "{stdout}");

    let json = arbiter().args(["check", "--format", "json", "--context", context]).arg(&file).output().unwrap();
    assert_eq!(json.status.code(), Some(1));
    let diags: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let got: Vec<(String, u64, u64)> = diags
        .as_array()
        .unwrap()
        .iter()
        .map(|d| (d["code"].as_str().unwrap().to_string(), d["line"].as_u64().unwrap(), d["column"].as_u64().unwrap()))
        .collect();
    assert_eq!(got, [("E102".into(), 1, 14), ("E201".into(), 5, 5), ("E109".into(), 8, 13)]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn bad_usage_exits_2() {
    let out = arbiter().args(["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = arbiter().args(["check", "--context", "/nonexistent.json", "x.rules"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
}
