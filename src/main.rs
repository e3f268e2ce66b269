//! The `arbiter` command line.

use std::process::ExitCode;

use arbiter::engine::NoSignals;

const USAGE: &str = "usage: arbiter <command>

commands:
  serve [--listen ADDR] [--data DIR] [--plugins DIR]
                     run the server (see `arbiter serve --help`)
  demo [--explain]   build the cross-sell tutorial in-process and print the decision for cust_42
  check [--context FILE] [--format text|json] PATH...
                     check rule files; exit 1 if any has an error";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => demo(args.iter().any(|a| a == "--explain")),
        Some("check") => arbiter::cli_check::run(&args[1..]),
        Some("serve") => arbiter::serve::main(&args[1..]),
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn demo(explain: bool) -> ExitCode {
    let tutorial = match arbiter::demo::tutorial() {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let decision = tutorial.flow.decide(&arbiter::demo::request(), &NoSignals, explain);
    match serde_json::to_string_pretty(&decision) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
