//! The examples in grammar/README.md are checked: ```rules blocks must be clean against
//! tests/data/context.json, and ```rules-error blocks must give exactly the codes listed on
//! their first line (`// expect: E102 E201`).

use arbiter::dsl::check_source;

fn blocks(markdown: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(tag)) if tag.starts_with("rules") => current = Some((tag.trim().to_string(), String::new())),
            (Some(_), Some("")) => out.push(current.take().expect("open block")),
            (Some((_, body)), _) => {
                body.push_str(line);
                body.push('\n');
            }
            _ => {}
        }
    }
    assert!(current.is_none(), "unclosed code block in grammar/README.md");
    out
}

#[test]
fn readme_examples_check_as_documented() {
    let readme = include_str!("../grammar/README.md");
    let ctx = arbiter::catalog::fixture_context(include_bytes!("data/context.json")).unwrap();
    let blocks = blocks(readme);
    assert!(blocks.len() >= 7, "examples went missing: {}", blocks.len());
    let mut failures = Vec::new();
    for (i, (tag, body)) in blocks.iter().enumerate() {
        let checked = check_source("README.md", body, &ctx);
        let mut codes: Vec<&str> = checked.diagnostics.iter().map(|d| d.code).collect();
        codes.sort_unstable();
        let mut want: Vec<&str> = match tag.as_str() {
            "rules" => Vec::new(),
            "rules-error" => body
                .lines()
                .next()
                .and_then(|l| l.trim().strip_prefix("// expect:"))
                .unwrap_or_else(|| panic!("block {i}: rules-error needs `// expect: CODES` first"))
                .split_whitespace()
                .collect(),
            other => panic!("block {i}: unknown tag `{other}`"),
        };
        want.sort_unstable();
        if codes != want {
            let text = arbiter::dsl::error::render("README.md", body, &checked.diagnostics);
            failures.push(format!("block {i} ({tag}): expected {want:?}, got {codes:?}\n{text}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
