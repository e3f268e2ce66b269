//! The `arbiter` command line.

use std::process::ExitCode;

use arbiter::engine::NoSignals;
use clap::{Parser, Subcommand};

/// Real-time decisioning: next-best-offer decisions in microseconds.
#[derive(Parser)]
#[command(name = "arbiter", version, propagate_version = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the HTTP server
    Serve(arbiter::serve::ServeArgs),
    /// Check rule files; exit 0 when clean, 1 with errors, 2 on bad usage
    Check(arbiter::cli_check::CheckArgs),
    /// Send a flow's recent logged requests through its draft on a running server; print what changes
    Simulate(arbiter::cli_simulate::SimulateArgs),
    /// Build the cross-sell tutorial in-process and print the decision for cust_42
    Demo {
        /// Add the score breakdown and why every other offer was removed
        #[arg(long)]
        explain: bool,
    },
}

/// clap answers `--help` and `--version` with exit 0 and bad usage (including an
/// unknown command) with a message and exit 2.
/// mimalloc instead of glibc's allocator: a decision allocates a few dozen small objects,
/// and glibc's malloc and free were ~11% of the server's CPU under load.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    match Cli::parse().command {
        Cmd::Serve(args) => arbiter::serve::main(&args),
        Cmd::Check(args) => arbiter::cli_check::run(&args),
        Cmd::Simulate(args) => arbiter::cli_simulate::run(&args),
        Cmd::Demo { explain } => demo(explain),
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
