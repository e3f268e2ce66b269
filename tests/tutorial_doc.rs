//! Runs docs/tutorial.md as written: every ```sh block in order, in one bash session,
//! against the real binary (started here with the repository's plugins/ folder), and
//! compares each block's output with the ```output block that follows it in the page.
//! ```sh setup blocks (installing, starting the server, exporting BASE and API_KEY) are
//! the ones this test does itself. Needs curl and jq (CI installs them).

mod support;

use std::process::Command;

use support::BinaryServer;

const KEY: &str = "tutorial-doc-admin-key";

/// A fenced block: its info string and its text.
struct Block {
    info: String,
    text: String,
}

fn blocks(markdown: &str) -> Vec<Block> {
    let mut out = Vec::new();
    let mut current: Option<Block> = None;
    for line in markdown.lines() {
        match (&mut current, line.strip_prefix("```")) {
            (None, Some(info)) => current = Some(Block { info: info.trim().to_string(), text: String::new() }),
            (Some(_), Some(_)) => out.push(current.take().expect("open block")),
            (Some(block), None) => {
                block.text.push_str(line);
                block.text.push('\n');
            }
            (None, None) => {}
        }
    }
    assert!(current.is_none(), "docs/tutorial.md has an unclosed code block");
    out
}

/// The runnable steps: each `sh` block with the `output` block that follows it, if any.
fn steps(blocks: &[Block]) -> Vec<(String, Option<String>)> {
    let mut steps = Vec::new();
    for (i, b) in blocks.iter().enumerate() {
        match b.info.as_str() {
            "sh" => {
                let expected = blocks.get(i + 1).filter(|n| n.info == "output").map(|n| n.text.clone());
                steps.push((b.text.clone(), expected));
            }
            "output" => assert!(i > 0 && blocks[i - 1].info == "sh", "an output block must follow a sh block"),
            _ => {}
        }
    }
    steps
}

fn normalise(text: &str) -> String {
    text.lines().map(str::trim_end).collect::<Vec<_>>().join("\n").trim().to_string()
}

#[test]
fn the_tutorial_runs_as_written() {
    for tool in ["curl", "jq", "bash"] {
        let found = Command::new("sh").args(["-c", &format!("command -v {tool}")]).status().is_ok_and(|s| s.success());
        assert!(found, "`{tool}` is needed to run docs/tutorial.md: install it (apt-get install {tool})");
    }
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/tutorial.md")).unwrap();
    let steps = steps(&blocks(&page));
    assert!(steps.len() >= 10, "the tutorial lost its steps: {} runnable blocks", steps.len());
    let tmp = support::temp_dir("tutorial-doc");
    let work = tmp.path().to_path_buf();
    let plugins = concat!(env!("CARGO_MANIFEST_DIR"), "/plugins");
    let server = BinaryServer::start(&work, &["--data", "data", "--plugins", plugins], KEY);
    // `set -a` exports every variable the page assigns, as the page tells the reader to.
    let mut script = format!("set -euo pipefail\nset -a\nBASE=http://{}\nAPI_KEY={KEY}\n", server.addr);
    for (i, (code, _)) in steps.iter().enumerate() {
        script.push_str(&format!("echo '@@step {i}@@'\n{code}"));
    }
    let out = Command::new("bash").arg("-c").arg(&script).current_dir(&work).output().expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the tutorial's commands failed:\n{stdout}\n{stderr}\nserver log:\n{}",
        server.log_text()
    );
    let outputs: Vec<&str> =
        stdout.split("@@step ").skip(1).map(|s| s.split_once("@@\n").map_or("", |(_, o)| o)).collect();
    assert_eq!(outputs.len(), steps.len(), "every step ran:\n{stdout}");
    for (i, ((code, expected), got)) in steps.iter().zip(&outputs).enumerate() {
        if let Some(expected) = expected {
            assert_eq!(
                normalise(got),
                normalise(expected),
                "step {i} of docs/tutorial.md printed something else than the page shows:\n{code}"
            );
        }
    }
    drop(server);
}
