//! `walleot-bench`: how fast and how lean the service is, each figure beside a baseline
//! measured in the same run on the same machine.
//!
//! ```sh
//! cargo run --release -p walleot-bench -- --short     # about 3 minutes on 2 cores
//! cargo run --release -p walleot-bench                # longer runs, steadier figures
//! cargo run --release -p walleot-bench -- --only postgres   # the service on PostgreSQL
//! cargo run --release -p walleot-bench -- --only webhooks   # creations with an endpoint, deliveries/s
//! ```
//! Writes a Markdown table to stdout and to `--out` (default `target/benchmarks.md`).
//! The executable also serves as the service (`walleot-bench walleot serve …`, the same
//! code as the `walleot` binary) and as the baseline server, so that each runs in a
//! process of its own.

mod load;
mod postgres;
mod process;
mod scenarios;
mod webhooks;

use clap::Parser;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Parser, Debug, Clone)]
#[command(about = "Benchmarks of the Walleot service against baselines on this machine")]
pub struct Args {
    /// Shorter runs (5 s per load, fewer items): the whole benchmark in a few minutes.
    #[arg(long)]
    pub short: bool,
    /// Concurrent connections of the load generator.
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// Where the Markdown table is written.
    #[arg(long, default_value = "target/benchmarks.md")]
    pub out: PathBuf,
    /// A Python with the Python SDK and `mcp` installed, to measure its example server
    /// (`cargo test -p walleot-mcp --test python_sdk` makes this one).
    #[arg(long, default_value = "target/tmp/python-sdk-venv/bin/python")]
    pub python_sdk: PathBuf,
    /// A built copy of the Node SDK, to measure its example server (`cargo test -p
    /// walleot-mcp --test node_sdk` makes this one).
    #[arg(long, default_value = "target/tmp/node-sdk")]
    pub node_sdk: PathBuf,
    /// A Python with the official PyPI `walleot` 0.4.3 and `paymcp` installed, for the
    /// comparison (`cargo test -p walleot-server --test python_compat` makes this one).
    #[arg(long, default_value = "target/tmp/python-walleot-venv/bin/python")]
    pub official_walleot: PathBuf,
    /// Only the service's share of a paid call (`paid-requests`), or only the writes
    /// (`writes`: creations and charges beside raw commits), e.g. to compare builds of
    /// the service named by `WALLEOT_BENCH_SERVICE`; or the service on PostgreSQL with
    /// one instance and two (`postgres`, on `--postgres`); or what webhooks cost the
    /// creations and how fast they are delivered (`webhooks`).
    #[arg(long, value_parser = ["paid-requests", "writes", "postgres", "webhooks"])]
    pub only: Option<String>,
    /// The PostgreSQL database of `--only postgres` (a schema of its own is made there
    /// and dropped afterwards).
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5432/test")]
    pub postgres: String,
}

impl Args {
    pub fn duration(&self) -> Duration {
        Duration::from_secs(if self.short { 5 } else { 20 })
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = match argv.get(1).map(String::as_str) {
        Some("walleot") => {
            let cli = <walleot_server::cli::Cli as clap::Parser>::parse_from(
                std::iter::once("walleot".to_string()).chain(argv[2..].iter().cloned()),
            );
            runtime.block_on(walleot_server::cli::run(cli))
        }
        Some("baseline") => runtime.block_on(scenarios::baseline_server(argv.get(2).cloned())),
        _ => runtime.block_on(scenarios::all(Args::parse())),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
