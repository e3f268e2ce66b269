//! `arbiter check [--data DIR | --server URL | --context FILE] [--format text|json] PATH...`:
//! checks rule files and prints every diagnostic, then a summary line. Without a tenant
//! only what needs none is checked (syntax, `let`s, limits, weights), and a note says
//! so. Exit 0 when clean (warnings allowed), 1 when any file has an error, 2 on bad
//! usage or when the files or the tenant cannot be read.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::client::{error_message, Remote};
use crate::dsl::error::{locate, render};
use crate::dsl::{check_source, check_syntax, Context, Diagnostic, Severity};
use crate::rules::ir::Span;

/// `arbiter check`'s options.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = "Without --data, --server or --context only syntax, `let` names, size limits and \
score weights are checked.\nExit status: 0 clean (warnings allowed), 1 errors, 2 bad usage or unreadable input.")]
pub struct CheckArgs {
    /// .rules files, or folders of them (not recursive)
    #[arg(required = true, value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Check against the tenant stored in this data folder (stop the server first, or use --server)
    #[arg(long, value_name = "DIR", conflicts_with_all = ["server", "context"])]
    pub data: Option<PathBuf>,
    /// Check against a running server's tenant (the key's); nothing is installed
    #[arg(long, value_name = "URL", conflicts_with = "context")]
    pub server: Option<String>,
    /// Check against a tenant described in a JSON file (schemas, offers, channels, flows)
    #[arg(long, value_name = "FILE")]
    pub context: Option<PathBuf>,
    /// The tenant to check against with --data
    #[arg(long, env = "ARBITER_TENANT_ID", value_name = "ID", default_value = "default")]
    pub tenant: String,
    /// API key for --server (editor or admin)
    #[arg(long, env = "ARBITER_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// How diagnostics are printed on stdout
    #[arg(long, value_enum, default_value_t = Format::Text)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Rendered with the source line and a caret, then a summary line
    Text,
    /// A JSON array of located diagnostics (the summary goes to stderr)
    Json,
}

pub const NO_TENANT_NOTE: &str = "note: no tenant given (--data DIR, --server URL or --context FILE): \
offers, categories, channels, flows and attributes were not checked";

pub fn run(args: &CheckArgs) -> ExitCode {
    match check(args) {
        Ok(clean) => ExitCode::from(if clean { 0 } else { 1 }),
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

/// What the files are checked against.
enum Against {
    Syntax,
    Tenant(Context),
    Server(Remote),
}

/// One file's outcome, however it was checked.
struct FileReport {
    rules: usize,
    scores: usize,
    diagnostics: Vec<Diagnostic>,
}

/// Checks every file; returns whether all were free of errors.
fn check(args: &CheckArgs) -> Result<bool, String> {
    let against = against(args)?;
    let files = rule_files(&args.paths)?;
    let json = args.format == Format::Json;
    let (mut rules, mut scores, mut errors, mut warnings) = (0, 0, 0, 0);
    let mut located = Vec::new();
    for file in &files {
        let source = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = file.display().to_string();
        let report = check_file(&against, file, &name, &source)?;
        rules += report.rules;
        scores += report.scores;
        errors += report.diagnostics.iter().filter(|d| d.is_error()).count();
        warnings += report.diagnostics.iter().filter(|d| !d.is_error()).count();
        if json {
            located.extend(report.diagnostics.iter().map(|d| locate(&name, &source, d)));
        } else {
            print!("{}", render(&name, &source, &report.diagnostics));
        }
    }
    if json {
        println!("{}", serde_json::to_string_pretty(&located).map_err(|e| e.to_string())?);
    }
    let line = summary(files.len(), rules, scores, errors, warnings);
    if json {
        eprintln!("{line}");
    } else {
        println!("{line}");
    }
    if matches!(against, Against::Syntax) {
        eprintln!("{NO_TENANT_NOTE}");
    }
    Ok(errors == 0)
}

fn against(args: &CheckArgs) -> Result<Against, String> {
    if let Some(path) = &args.context {
        let bytes = std::fs::read(path).map_err(|e| format!("tenant context {}: {e}", path.display()))?;
        let ctx =
            crate::catalog::fixture_context(&bytes).map_err(|e| format!("tenant context {}: {e}", path.display()))?;
        return Ok(Against::Tenant(ctx));
    }
    if let Some(dir) = &args.data {
        return stored_tenant(dir, &args.tenant).map(Against::Tenant);
    }
    if let Some(url) = &args.server {
        let key =
            args.key.clone().filter(|k| !k.is_empty()).ok_or(
                "--server needs an API key with the editor role: --key KEY or ARBITER_API_KEY=KEY".to_string(),
            )?;
        return Remote::new(url, key).map(Against::Server);
    }
    Ok(Against::Syntax)
}

fn check_file(against: &Against, file: &Path, name: &str, source: &str) -> Result<FileReport, String> {
    Ok(match against {
        Against::Syntax => {
            let checked = check_syntax(name, source);
            let (rules, scores) = written_items(source);
            FileReport { rules, scores, diagnostics: checked.diagnostics }
        }
        Against::Tenant(ctx) => {
            let checked = check_source(name, source, ctx);
            FileReport { rules: checked.rules.len(), scores: checked.scores.len(), diagnostics: checked.diagnostics }
        }
        Against::Server(remote) => check_remote(remote, file, source)?,
    })
}

/// Rules and score blocks written in a file (a syntax-only check compiles none).
fn written_items(source: &str) -> (usize, usize) {
    use crate::dsl::ast::Item;
    let (ast, _) = crate::dsl::parse::parse(source);
    let rules = ast.items.iter().filter(|i| matches!(i, Item::Rule(_))).count();
    let scores = ast.items.iter().filter(|i| matches!(i, Item::Score(_))).count();
    (rules, scores)
}

/// `checked 2 files, 5 rules, 1 score block: ok` or `checked 2 files: 3 errors, 1 warning`.
fn summary(files: usize, rules: usize, scores: usize, errors: usize, warnings: usize) -> String {
    let files = count(files, "file");
    if errors > 0 {
        let warnings = if warnings > 0 { format!(", {}", count(warnings, "warning")) } else { String::new() };
        return format!("checked {files}: {}{warnings}", count(errors, "error"));
    }
    let warnings = if warnings > 0 { format!(" ({})", count(warnings, "warning")) } else { String::new() };
    format!("checked {files}, {}, {}: ok{warnings}", count(rules, "rule"), count(scores, "score block"))
}

fn count(n: usize, what: &str) -> String {
    format!("{n} {what}{}", if n == 1 { "" } else { "s" })
}

/// The `.rules` files named, folders expanded (sorted, not recursive).
fn rule_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut files = Vec::new();
    for p in paths {
        if p.is_dir() {
            let entries = std::fs::read_dir(p).map_err(|e| format!("{}: {e}", p.display()))?;
            let mut found: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|f| f.extension().is_some_and(|x| x == "rules"))
                .collect();
            found.sort();
            files.extend(found);
        } else {
            files.push(p.clone());
        }
    }
    Ok(files)
}

/// The tenant as a stopped server left it in its data folder.
fn stored_tenant(dir: &Path, tenant: &str) -> Result<Context, String> {
    use crate::store::{SledStore, Storage};
    // Opening would create a store: refuse a folder that is not one.
    if !dir.join("db").is_file() {
        return Err(format!("{} is not an arbiter data folder (no sled database in it)", dir.display()));
    }
    let store = SledStore::open(dir).map_err(|e| match e.to_string().contains("could not acquire lock") {
        true => format!(
            "the data folder {} is in use, probably by a running server; \
             check against that server with --server URL --key KEY instead",
            dir.display()
        ),
        false => format!("opening {}: {e}", dir.display()),
    })?;
    let ids: Vec<String> = match store.get(b"registry/tenants").map_err(|e| e.to_string())? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("unreadable tenant list: {e}"))?,
        None => Vec::new(),
    };
    if !ids.iter().any(|id| id == tenant) {
        return Err(format!("no tenant `{tenant}` in {} (tenants: {})", dir.display(), ids.join(", ")));
    }
    let (catalog, warnings) = crate::tenant::persist::load_catalog(&store, tenant).map_err(|e| e.to_string())?;
    for w in warnings {
        eprintln!("note: {w}");
    }
    Ok(catalog.dsl_context())
}

/// The `/check` reply's fields the CLI uses.
#[derive(serde::Deserialize)]
struct RemoteCheck {
    rules: usize,
    scores: usize,
    diagnostics: Vec<RemoteDiagnostic>,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct RemoteDiagnostic {
    line: usize,
    column: usize,
    end_line: usize,
    end_column: usize,
    severity: String,
    code: String,
    message: String,
    help: Option<String>,
}

/// A file checked by a running server's `POST /api/v1/plugins/{name}/check`.
fn check_remote(remote: &Remote, file: &Path, source: &str) -> Result<FileReport, String> {
    let name = file.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let path = format!("/api/v1/plugins/{}/check", encode_segment(&name));
    let (status, body) = remote.post(&path, "text/plain; charset=utf-8", source.to_string())?;
    if status != 200 {
        return Err(format!("{}: the server answered {status}: {}", file.display(), error_message(&body)));
    }
    let reply: RemoteCheck = serde_json::from_slice(&body)
        .map_err(|e| format!("{}: unexpected reply from the server: {e}", file.display()))?;
    let diagnostics = reply.diagnostics.into_iter().map(|d| d.into_diagnostic(source)).collect();
    Ok(FileReport { rules: reply.rules, scores: reply.scores, diagnostics })
}

impl RemoteDiagnostic {
    /// Back to a span in the local copy of the file, so it renders like a local check.
    fn into_diagnostic(self, source: &str) -> Diagnostic {
        let start = offset(source, self.line, self.column);
        let end = offset(source, self.end_line, self.end_column).max(start);
        // `Diagnostic::code` is `&'static str` (codes are constants in the checker); this
        // process prints and exits, so keeping a few short strings alive costs nothing.
        let code: &'static str = Box::leak(self.code.into_boxed_str());
        let severity = if self.severity == "warning" { Severity::Warning } else { Severity::Error };
        Diagnostic { severity, code, message: self.message, span: Span::new(start, end), help: self.help }
    }
}

/// The byte offset of a 1-based line and column (in characters); clamped to the text.
fn offset(source: &str, line: usize, column: usize) -> usize {
    let line_start: usize = source.split_inclusive('\n').take(line.saturating_sub(1)).map(str::len).sum();
    let rest = &source[line_start.min(source.len())..];
    let within = rest.char_indices().nth(column.saturating_sub(1)).map_or(rest.len(), |(i, _)| i);
    line_start + within
}

/// Percent-encodes a file name for one path segment.
fn encode_segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        assert_eq!(summary(2, 5, 1, 0, 0), "checked 2 files, 5 rules, 1 score block: ok");
        assert_eq!(summary(1, 1, 0, 0, 2), "checked 1 file, 1 rule, 0 score blocks: ok (2 warnings)");
        assert_eq!(summary(2, 5, 1, 3, 1), "checked 2 files: 3 errors, 1 warning");
    }

    #[test]
    fn offsets_invert_line_and_column() {
        let src = "ab\ncé d\n";
        for at in [0, 1, 3, 4, 6, 7, src.len()] {
            let (line, column) = crate::dsl::error::line_col(src, at);
            assert_eq!(offset(src, line, column), at, "offset {at}");
        }
    }

    #[test]
    fn names_are_encoded_for_the_path() {
        assert_eq!(encode_segment("cross_sell.rules"), "cross_sell.rules");
        assert_eq!(encode_segment("a b/é.rules"), "a%20b%2F%C3%A9.rules");
    }
}
