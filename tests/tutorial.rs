//! Runs tests/tutorial.sh — the tutorial's commands verbatim with curl and jq against
//! the real binary — so `cargo test` covers it. Needs `curl` and `jq` (CI installs them).

use std::process::Command;

#[test]
fn tutorial_runs_verbatim_over_http() {
    for tool in ["curl", "jq", "bash"] {
        let found =
            Command::new("sh").args(["-c", &format!("command -v {tool}")]).output().is_ok_and(|o| o.status.success());
        assert!(found, "`{tool}` is needed for tests/tutorial.sh: install it (e.g. apt-get install {tool})");
    }
    let out = Command::new("bash")
        .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/tutorial.sh"))
        .env("ARBITER_BIN", env!("CARGO_BIN_EXE_arbiter"))
        .output()
        .expect("run tests/tutorial.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "tutorial.sh failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("ok: rank 1 = Rewards credit card"), "{stdout}");
    assert!(stdout.contains("ok: capped count = 0"), "the What's-next contact cap ran: {stdout}");
}
