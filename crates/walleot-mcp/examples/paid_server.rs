//! A small MCP server with a free tool and two priced ones, paid through Walleot.
//!
//! ```sh
//! WALLEOT_API_KEY=sk_test_… cargo run -p walleot-mcp --example paid_server -- --mode two-step
//! WALLEOT_API_KEY=sk_test_… cargo run -p walleot-mcp --example paid_server -- --mode resubmit --http 127.0.0.1:3001
//! WALLEOT_API_KEY=sk_test_… cargo run -p walleot-mcp --example paid_server -- --store sqlite:payments.db
//! WALLEOT_API_KEY=sk_test_… cargo run -p walleot-mcp --example paid_server -- --http 127.0.0.1:3001 --store redis://127.0.0.1:6379
//! ```
//! Over stdio by default; with `--http ADDR` a streamable HTTP endpoint at `/mcp`, with
//! `--stateless` one that keeps no MCP sessions.

use clap::Parser;
use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{tool, tool_handler, tool_router, ServerHandler, ServiceExt};
use serde::Deserialize;
use std::sync::Arc;
use walleot_mcp::store::{MemoryStore, PaymentStore, RedisStore, SqliteStore};
use walleot_mcp::{Mode, Walleot};

#[derive(Clone)]
struct Tools {
    tool_router: ToolRouter<Self>,
}

#[derive(Deserialize, rmcp::schemars::JsonSchema)]
struct AddArgs {
    a: f64,
    b: f64,
}

#[derive(Deserialize, rmcp::schemars::JsonSchema)]
struct AnalysisArgs {
    data: String,
}

#[tool_router]
impl Tools {
    /// The tools; `fragile_report` only with `--failing-tool`.
    fn new(failing_tool: bool) -> Self {
        let mut tool_router = Self::tool_router();
        if !failing_tool {
            tool_router.remove_route("fragile_report");
        }
        Tools { tool_router }
    }

    #[tool(description = "Answers pong. Free.")]
    async fn ping(&self) -> String {
        "pong".into()
    }

    #[tool(description = "Adds two numbers.")]
    async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        (a + b).to_string()
    }

    #[tool(description = "Advanced data analysis.")]
    async fn premium_analysis(
        &self,
        Parameters(AnalysisArgs { data }): Parameters<AnalysisArgs>,
    ) -> String {
        let words = data.split_whitespace().count();
        format!("{words} words, {} characters", data.chars().count())
    }

    #[tool(description = "A report whose source is always down: it fails after payment.")]
    async fn fragile_report(
        &self,
        Parameters(AnalysisArgs { data }): Parameters<AnalysisArgs>,
    ) -> Result<String, String> {
        let asked = data.chars().count();
        Err(format!(
            "the report source is down; nothing was made of {asked} characters"
        ))
    }
}

#[tool_handler(router = self.tool_router, name = "walleot-paid-example", version = "0.1.0")]
impl ServerHandler for Tools {}

#[derive(Parser)]
#[command(about = "An MCP server with priced tools, paid through Walleot")]
struct Args {
    /// How payments happen: two-step, resubmit, elicitation, progress, dynamic-tools or
    /// auto.
    #[arg(long, default_value = "two-step")]
    mode: Mode,
    /// Serve streamable HTTP at ADDR/mcp instead of stdio.
    #[arg(long)]
    http: Option<String>,
    /// With --http, serve without MCP sessions (MCP 2026-07-28 requests never have one).
    #[arg(long, requires = "http")]
    stateless: bool,
    /// Where open payments are kept: `memory` (lost on restart), `sqlite:PATH`, a file
    /// that survives restarts and can be shared by several server processes on one
    /// machine, or `redis://HOST:PORT[/DB]`, shared by instances behind a balancer.
    #[arg(long, default_value = "memory")]
    store: String,
    /// Also serve `fragile_report(data)` at 0.05 USD, which always fails: its payment
    /// is released, never captured (the conformance suite checks this).
    #[arg(long)]
    failing_tool: bool,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // Logs go to stderr (stdout carries the stdio transport); RUST_LOG picks the level.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .init();
    let args = Args::parse();
    let store: Arc<dyn PaymentStore> = match args.store.split_once(':') {
        Some(("sqlite", path)) => Arc::new(SqliteStore::open(std::path::Path::new(path)).await?),
        Some(("redis", _)) => Arc::new(RedisStore::open(&args.store).await?),
        None if args.store == "memory" => Arc::new(MemoryStore::new()),
        _ => {
            return Err(format!(
                "unknown store `{}`: use memory, sqlite:PATH or redis://HOST:PORT",
                args.store
            )
            .into())
        }
    };
    let walleot = Walleot::from_env()?
        .store(store)
        .mode(args.mode)
        .price("add", "0.19", "USD")?
        .price("premium_analysis", "0.50", "USD")?
        .price("fragile_report", "0.05", "USD")?;
    let failing_tool = args.failing_tool;
    match args.http {
        None => {
            let running = walleot
                .wrap(Tools::new(failing_tool))
                .serve(rmcp::transport::stdio())
                .await?;
            running.waiting().await?;
        }
        Some(addr) => {
            let service = StreamableHttpService::new(
                move || Ok(walleot.wrap(Tools::new(failing_tool))),
                Arc::new(LocalSessionManager::default()),
                StreamableHttpServerConfig::default().with_legacy_session_mode(!args.stateless),
            );
            let app = axum::Router::new().nest_service("/mcp", service);
            let listener = tokio::net::TcpListener::bind(&addr).await?;
            eprintln!(
                "MCP over streamable HTTP at http://{}/mcp",
                listener.local_addr()?
            );
            axum::serve(listener, app).await?;
        }
    }
    Ok(())
}
