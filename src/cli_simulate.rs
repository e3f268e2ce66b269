//! `arbiter simulate FLOW [--server URL] [--key KEY] [--limit N] [--since TIME]
//! [--format table|json]`: asks a running server to send the flow's recent logged
//! requests through its draft (`POST /api/v1/decision-flows/simulate`, which records
//! nothing) and prints the answer as a table. Exit 0 on an answer, 1 when the server
//! refuses, 2 on bad usage or an unreachable server.

use std::process::ExitCode;

use serde_json::{json, Value};

use crate::client::{error_message, Remote};

#[derive(Debug, Clone, clap::Args)]
pub struct SimulateArgs {
    /// The flow's key or id; its live version's logged requests go through its draft
    #[arg(value_name = "FLOW")]
    pub flow: String,
    /// The running server
    #[arg(long, env = "ARBITER_SERVER", value_name = "URL", default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// API key (editor or admin)
    #[arg(long, env = "ARBITER_API_KEY", value_name = "KEY", hide_env_values = true)]
    pub key: Option<String>,
    /// How many of the most recent logged requests (default 10,000, at most 100,000)
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Only requests logged at or after this time (RFC 3339)
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// How the answer is printed
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Offers, removals and estimates as aligned tables
    Table,
    /// The server's JSON answer
    Json,
}

pub fn run(args: &SimulateArgs) -> ExitCode {
    let Some(key) = args.key.clone() else {
        eprintln!("error: simulate needs an API key with the editor role: --key KEY or ARBITER_API_KEY=KEY");
        return ExitCode::from(2);
    };
    let remote = match Remote::new(&args.server, key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let mut body = json!({"id": args.flow});
    if let Some(limit) = args.limit {
        body["limit"] = json!(limit);
    }
    if let Some(since) = &args.since {
        body["since"] = json!(since);
    }
    let (status, reply) = match remote.post("/api/v1/decision-flows/simulate", "application/json", body.to_string()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if status != 200 {
        eprintln!("error: the server answered {status}: {}", error_message(&reply));
        return ExitCode::FAILURE;
    }
    let Ok(sim) = serde_json::from_slice::<Value>(&reply) else {
        eprintln!("error: unexpected reply from the server: {}", String::from_utf8_lossy(&reply));
        return ExitCode::from(2);
    };
    match args.format {
        Format::Json => println!("{}", serde_json::to_string_pretty(&sim).unwrap_or_default()),
        Format::Table => print!("{}", table(&args.flow, &sim)),
    }
    ExitCode::SUCCESS
}

/// The simulation as text: a summary line, then offers, removals and estimates.
pub fn table(flow: &str, sim: &Value) -> String {
    let mut out = format!(
        "{flow}: {} logged requests, {} changed by the draft\n\n",
        sim["requests"].as_u64().unwrap_or(0),
        sim["changed"].as_u64().unwrap_or(0)
    );
    let offers = sim["offers"].as_array().cloned().unwrap_or_default();
    let width = offers.iter().filter_map(|o| o["offerName"].as_str()).map(str::len).chain([5]).max().unwrap_or(5);
    out += &format!("{:width$}  {:>7}  {:>7}\n", "offer", "live", "draft");
    for o in &offers {
        let share = |k: &str| format!("{:.1} %", 100.0 * o[k].as_f64().unwrap_or(0.0));
        out += &format!(
            "{:width$}  {:>7}  {:>7}\n",
            o["offerName"].as_str().unwrap_or("?"),
            share("liveShare"),
            share("draftShare")
        );
    }
    if let Some(removed) = sim["removedBy"].as_object().filter(|m| !m.is_empty()) {
        out += "\nwhat the draft drops of what live showed (request, offer pairs)\n";
        for (why, n) in removed {
            out += &format!("  {why}: {n}\n");
        }
    }
    let estimate = &sim["estimate"];
    if estimate.is_null() {
        out += &format!("\nno estimate: {}\n", sim["estimateNote"].as_str().unwrap_or(""));
        return out;
    }
    out += &format!(
        "\nestimates per request ({} requests; 95 % intervals)\n{:12}  {:>8}  {:>26}  {:>26}  {:>26}\n",
        estimate["requests"], "", "live", "IPS", "SNIPS", "doubly robust"
    );
    for (label, key) in [("conversions", "conversions"), ("revenue", "revenue")] {
        let e = &estimate[key];
        let interval = |k: &str| {
            let i = &e[k];
            if i.is_null() {
                return "-".to_string();
            }
            let f = |f: &str| i[f].as_f64().unwrap_or(f64::NAN);
            format!("{:.4} [{:.4}, {:.4}]", f("value"), f("low"), f("high"))
        };
        out += &format!(
            "{label:12}  {:>8.4}  {:>26}  {:>26}  {:>26}\n",
            e["live"].as_f64().unwrap_or(f64::NAN),
            interval("ips"),
            interval("snips"),
            interval("doublyRobust")
        );
    }
    out
}
