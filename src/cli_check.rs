//! `arbiter check [--context FILE] [--format text|json] PATH...`: checks rule files
//! against a tenant context and prints every diagnostic. Exit 0 when clean (warnings
//! allowed), 1 when any file has an error, 2 on bad usage or unreadable input.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use crate::dsl::error::{locate, render};
use crate::dsl::{check_source, Context};

pub const USAGE: &str = "arbiter check [--context FILE] [--format text|json] PATH...
  PATH      a .rules file or a folder of them
  --context a JSON tenant description (schemas, offers, channels, flows);
            default: context.json in the first folder given";

pub fn run(args: &[String]) -> ExitCode {
    match parse_args(args).and_then(|opts| check(&opts)) {
        Ok(clean) => ExitCode::from(if clean { 0 } else { 1 }),
        Err(message) => {
            eprintln!("error: {message}\n\nusage: {USAGE}");
            ExitCode::from(2)
        }
    }
}

struct Options {
    context: Option<PathBuf>,
    json: bool,
    paths: Vec<PathBuf>,
}

fn parse_args(args: &[String]) -> Result<Options, String> {
    let mut opts = Options { context: None, json: false, paths: Vec::new() };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--context" => opts.context = Some(it.next().ok_or("--context needs a file")?.into()),
            "--format" => match it.next().map(String::as_str) {
                Some("json") => opts.json = true,
                Some("text") => opts.json = false,
                other => return Err(format!("--format takes text or json, got {other:?}")),
            },
            flag if flag.starts_with("--") => return Err(format!("unknown option {flag}")),
            path => opts.paths.push(path.into()),
        }
    }
    if opts.paths.is_empty() {
        return Err("give at least one file or folder".into());
    }
    Ok(opts)
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

fn context(opts: &Options) -> Result<Context, String> {
    let path = match &opts.context {
        Some(p) => p.clone(),
        None => {
            let first = &opts.paths[0];
            let dir = if first.is_dir() { first.as_path() } else { first.parent().unwrap_or(Path::new(".")) };
            dir.join("context.json")
        }
    };
    let bytes = std::fs::read(&path).map_err(|e| format!("tenant context {}: {e}", path.display()))?;
    Context::from_fixture(&bytes).map_err(|e| format!("tenant context {}: {e}", path.display()))
}

/// Checks every file; returns whether all were free of errors.
fn check(opts: &Options) -> Result<bool, String> {
    let ctx = context(opts)?;
    let mut clean = true;
    let mut located = Vec::new();
    for file in rule_files(&opts.paths)? {
        let source = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
        let name = file.display().to_string();
        let checked = check_source(&name, &source, &ctx);
        clean &= !checked.has_errors();
        if opts.json {
            located.extend(checked.diagnostics.iter().map(|d| locate(&name, &source, d)));
        } else {
            print!("{}", render(&name, &source, &checked.diagnostics));
        }
    }
    if opts.json {
        println!("{}", serde_json::to_string_pretty(&located).map_err(|e| e.to_string())?);
    }
    Ok(clean)
}
