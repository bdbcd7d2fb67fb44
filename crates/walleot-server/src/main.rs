use clap::Parser;
use walleot_server::cli::{run, Cli};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    walleot_server::telemetry::init();
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
