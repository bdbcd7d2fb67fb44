//! The `walleot` command line: `serve` runs the service; `keys` and `merchants` are the
//! operator's tools, working on the same database directly.

use crate::domain::clock::rfc3339;
use crate::domain::receipts::Receipts;
use crate::domain::sessions::SessionPolicy;
use crate::domain::wallets::{format_voucher_code, WalletPolicy, Wallets};
use crate::domain::webhooks::{WebhookPolicy, Webhooks};
use crate::domain::{Clock, Livemode, SystemClock};
use crate::http::server::ConnectionLimits;
use crate::pages::PageLimits;
use crate::ratelimit::Limits;
use crate::startup::{self, Application, Config, Services};
use clap::{Args, Parser, Subcommand};
use std::sync::Arc;
use std::time::Duration;
use walleot_api::Currency;

#[derive(Debug, Parser)]
#[command(
    name = "walleot",
    version,
    about = "Walleot: per-call payments for AI-agent tools",
    long_about = "Walleot lets the author of an MCP server charge per tool call and lets the \
                  person behind the agent pay from a prepaid wallet.\n\n\
                  Start with `walleot serve`: on an empty database it creates a demo merchant \
                  and prints a test API key."
)]
pub struct Cli {
    /// Database to use: `sqlite://PATH` or a plain file path.
    #[arg(long, global = true, env = "WALLEOT_DATABASE_URL", default_value_t = startup::default_database_url())]
    pub database_url: String,

    /// Secret under which API keys are hashed. When unset, one is generated and kept in
    /// the database. Once keys exist it must not change, or they stop working.
    #[arg(
        long,
        global = true,
        env = "WALLEOT_KEY_SECRET",
        hide_env_values = true
    )]
    pub key_secret: Option<String>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the payment service (REST API under /v1).
    Serve(ServeArgs),
    /// Create, list and revoke secret API keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Create and list merchants, the owners of keys and sessions.
    #[command(subcommand)]
    Merchants(MerchantsCommand),
    /// Check the ledger.
    #[command(subcommand)]
    Ledger(LedgerCommand),
    /// Create voucher codes that payers redeem on their wallet page.
    #[command(subcommand)]
    Vouchers(VouchersCommand),
    /// Send webhook events again.
    #[command(subcommand)]
    Webhooks(WebhooksCommand),
    /// Manage the keys that sign receipts.
    #[command(subcommand, name = "signing-keys")]
    SigningKeys(SigningKeysCommand),
    /// Bring the database's schema up to date and exit (`serve` does it too, at start;
    /// instances starting together take turns).
    Migrate,
}

#[derive(Debug, Subcommand)]
pub enum LedgerCommand {
    /// Recompute every balance from the transfers; exit 1 on any mismatch, an overdrawn
    /// wallet, or balances that do not sum to zero.
    Verify,
}

#[derive(Debug, Subcommand)]
pub enum VouchersCommand {
    /// Create vouchers and print their codes, one a line. They are shown only this once.
    Create {
        /// Amount of each voucher in minor units (500 = 5.00 USD).
        #[arg(long)]
        amount: i64,
        /// ISO 4217 currency code.
        #[arg(long)]
        currency: String,
        /// How many vouchers.
        #[arg(long, default_value_t = 1)]
        count: usize,
        /// live vouchers credit live wallets; test vouchers credit test wallets.
        #[arg(long, default_value = "live")]
        mode: Livemode,
    },
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "WALLEOT_LISTEN", default_value = startup::DEFAULT_LISTEN)]
    pub listen: String,
    /// Base URL of the checkout links handed to payers (default: http://LISTEN).
    #[arg(long, env = "WALLEOT_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// A Redis (`redis://HOST:PORT[/DB]`) in which several instances count the rate
    /// limits together; without it each instance counts its own.
    #[arg(long, env = "WALLEOT_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Session creations (and other POSTs) allowed per key per minute.
    #[arg(long, env = "WALLEOT_RATE_LIMIT_SESSIONS", default_value_t = Limits::default().sessions_per_window)]
    pub rate_limit_sessions: u32,
    /// Status checks (and other GETs) allowed per key per minute.
    #[arg(long, env = "WALLEOT_RATE_LIMIT_STATUS", default_value_t = Limits::default().status_per_window)]
    pub rate_limit_status: u32,
    /// New wallets the payer's pages make per client address per hour.
    #[arg(long, env = "WALLEOT_RATE_LIMIT_WALLETS", default_value_t = PageLimits::default().wallets_per_hour)]
    pub rate_limit_wallets: u32,
    /// Passkey and authenticator-app enrolment requests per client address per hour (a
    /// passkey takes two).
    #[arg(long, env = "WALLEOT_RATE_LIMIT_ENROLMENTS", default_value_t = PageLimits::default().enrolments_per_hour)]
    pub rate_limit_enrolments: u32,
    /// Payment approval requests (passkey: two each; app code; the pay button) per client
    /// address per hour.
    #[arg(long, env = "WALLEOT_RATE_LIMIT_APPROVALS", default_value_t = PageLimits::default().approvals_per_hour)]
    pub rate_limit_approvals: u32,
    /// Voucher redemptions and test-credit top-ups per client address per hour.
    #[arg(long, env = "WALLEOT_RATE_LIMIT_TOP_UPS", default_value_t = PageLimits::default().top_ups_per_hour)]
    pub rate_limit_top_ups: u32,
    /// Largest session amount, in minor units.
    #[arg(long, env = "WALLEOT_MAX_AMOUNT", default_value_t = SessionPolicy::default().max_amount)]
    pub max_amount: i64,
    /// Seconds a session stays payable when the request names no `expiresIn`.
    #[arg(long, env = "WALLEOT_SESSION_TTL", default_value_t = SessionPolicy::default().default_ttl_secs)]
    pub session_ttl: i64,
    /// Sandbox credits of a new test wallet and of each "add test credits", in major
    /// units of the currency (10 = 10.00 USD).
    #[arg(long, env = "WALLEOT_SANDBOX_CREDIT", default_value_t = 10)]
    pub sandbox_credit: i64,
    /// Seconds the approved funds of a manual-capture session stay held before they
    /// return to the payer uncaptured.
    #[arg(long, env = "WALLEOT_HOLD_TTL", default_value_t = WalletPolicy::default().hold_ms / 1000)]
    pub hold_ttl: i64,
    /// Payments without a second factor (auto-approved, or one click on "Pay") a payer
    /// may make to one merchant per hour; beyond it each asks for the passkey or app.
    #[arg(long, env = "WALLEOT_AUTO_APPROVALS_PER_HOUR", default_value_t = WalletPolicy::default().auto_approvals_per_hour)]
    pub auto_approvals_per_hour: i64,
    /// Seconds a client has to send a request's headers (also how long an idle
    /// kept-alive connection stays open).
    #[arg(long, env = "WALLEOT_HEADER_TIMEOUT", default_value_t = ConnectionLimits::default().header_timeout.as_secs())]
    pub header_timeout: u64,
    /// Seconds a client has to send a request's whole body once its headers are in.
    #[arg(long, env = "WALLEOT_BODY_TIMEOUT", default_value_t = ConnectionLimits::default().body_timeout.as_secs())]
    pub body_timeout: u64,
    /// Most connections open at once; more clients wait until one closes.
    #[arg(long, env = "WALLEOT_MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// Let live webhook endpoints be on private, loopback or link-local addresses
    /// (refused by default: a live key must not reach into the service's own network).
    #[arg(long, env = "WALLEOT_WEBHOOK_ALLOW_PRIVATE_URLS")]
    pub webhook_allow_private_urls: bool,
    /// Seconds a webhook receiver has to answer an attempt.
    #[arg(long, env = "WALLEOT_WEBHOOK_TIMEOUT", default_value_t = WebhookPolicy::default().timeout.as_secs())]
    pub webhook_timeout: u64,
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Create a key and print it (only the key, on stdout). It is shown only this once.
    Create {
        /// test keys see test data only; live keys live data only.
        #[arg(long)]
        mode: Livemode,
        /// Merchant name or id (default: the only merchant, or the demo merchant).
        #[arg(long)]
        merchant: Option<String>,
    },
    /// List keys: id, merchant, mode, prefix, created, revoked.
    List,
    /// Revoke a key by its id (key_…); it stops working at once.
    Revoke { id: String },
}

#[derive(Debug, Subcommand)]
pub enum WebhooksCommand {
    /// Send an event (evt_…) again, with the same webhook-id, to every enabled endpoint
    /// of its merchant and mode that takes its type; print those endpoints.
    Redeliver { event_id: String },
}

#[derive(Debug, Subcommand)]
pub enum SigningKeysCommand {
    /// Add a new key and print its id: receipts are signed with it from now on, on
    /// every instance; receipts signed before still verify with the older keys, which
    /// stay published.
    Rotate,
    /// List the keys: id and when it was made, newest (the one that signs) first.
    List,
}

#[derive(Debug, Subcommand)]
pub enum MerchantsCommand {
    /// Create a merchant and print its id.
    Create { name: String },
    /// List merchants.
    List,
}

/// `sqlite://PATH` and `postgres://…` stay as they are; a bare path becomes a SQLite URL.
pub fn normalize_database_url(raw: &str) -> String {
    if raw.contains("://") || raw.starts_with("sqlite:") {
        raw.to_string()
    } else {
        format!("sqlite://{raw}")
    }
}

pub async fn run(cli: Cli) -> anyhow::Result<()> {
    let url = normalize_database_url(&cli.database_url);
    let services = Services::open(&url, cli.key_secret.as_deref()).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let now = clock.now_ms();
    match cli.command {
        Command::Serve(args) => serve(args, url, cli.key_secret, services, clock).await,
        Command::Migrate => {
            println!("the database is up to date");
            Ok(())
        }
        Command::Keys(KeysCommand::Create { mode, merchant }) => {
            let merchant = match merchant {
                Some(name) => services.merchants.find(&name).await?,
                None => services.merchants.default_merchant(now).await?,
            };
            let (_, key) = services.keys.create(&merchant.id, mode, now).await?;
            println!("{}", key.expose_secret());
            Ok(())
        }
        Command::Keys(KeysCommand::List) => {
            println!(
                "{:<28} {:<20} {:<5} {:<14} {:<21} REVOKED",
                "ID", "MERCHANT", "MODE", "PREFIX", "CREATED"
            );
            for k in services.keys.list().await? {
                println!(
                    "{:<28} {:<20} {:<5} {:<14} {:<21} {}",
                    k.id,
                    k.merchant_name,
                    k.mode,
                    format!("{}…", k.prefix),
                    rfc3339(k.created_at),
                    k.revoked_at.map(rfc3339).unwrap_or_else(|| "-".into())
                );
            }
            Ok(())
        }
        Command::Keys(KeysCommand::Revoke { id }) => {
            services.keys.revoke(&id, now).await?;
            eprintln!("revoked {id}");
            Ok(())
        }
        Command::Webhooks(WebhooksCommand::Redeliver { event_id }) => {
            let webhooks = Webhooks::new(services.store.clone(), clock, WebhookPolicy::default());
            let endpoints = webhooks.redeliver_any(&event_id).await?;
            for endpoint in &endpoints {
                println!("{endpoint}");
            }
            eprintln!("{event_id} is due again at {} endpoint(s)", endpoints.len());
            Ok(())
        }
        Command::SigningKeys(command) => {
            let receipts = Receipts::new(services.store.clone(), clock, "");
            match command {
                SigningKeysCommand::Rotate => println!("{}", receipts.rotate().await?.kid),
                SigningKeysCommand::List => {
                    for key in services.store.signing_keys().await? {
                        println!("{:<28} {}", key.kid, rfc3339(key.created_at));
                    }
                }
            }
            Ok(())
        }
        Command::Merchants(MerchantsCommand::Create { name }) => {
            let merchant = services.merchants.create(&name, now).await?;
            println!("{}", merchant.id);
            Ok(())
        }
        Command::Ledger(LedgerCommand::Verify) => {
            let wallets = Wallets::new(services.store.clone(), clock, WalletPolicy::default());
            let problems = wallets.verify_ledger().await?;
            let (accounts, transfers) = services.store.ledger_snapshot().await?;
            if problems.is_empty() {
                println!(
                    "ledger consistent: {} accounts, {} transfers",
                    accounts.len(),
                    transfers.len()
                );
                Ok(())
            } else {
                for p in &problems {
                    println!("{p}");
                }
                anyhow::bail!("the ledger has {} problem(s)", problems.len())
            }
        }
        Command::Vouchers(VouchersCommand::Create {
            amount,
            currency,
            count,
            mode,
        }) => {
            let currency: Currency = currency
                .parse()
                .map_err(|e| anyhow::anyhow!("--currency: {e}"))?;
            let wallets = Wallets::new(services.store.clone(), clock, WalletPolicy::default());
            for (_, code) in wallets
                .create_vouchers(amount, currency, mode.is_live(), count)
                .await?
            {
                println!("{}", format_voucher_code(&code));
            }
            Ok(())
        }
        Command::Merchants(MerchantsCommand::List) => {
            println!("{:<28} {:<21} NAME", "ID", "CREATED");
            for m in services.merchants.list().await? {
                println!("{:<28} {:<21} {}", m.id, rfc3339(m.created_at), m.name);
            }
            Ok(())
        }
    }
}

async fn serve(
    args: ServeArgs,
    database_url: String,
    key_secret: Option<String>,
    services: Services,
    clock: Arc<dyn Clock>,
) -> anyhow::Result<()> {
    let mut config = Config {
        listen: args.listen,
        database_url,
        public_url: args.public_url,
        key_secret,
        redis_url: args.redis_url,
        ..Config::default()
    };
    config.limits.sessions_per_window = args.rate_limit_sessions;
    config.limits.status_per_window = args.rate_limit_status;
    config.page_limits = PageLimits {
        wallets_per_hour: args.rate_limit_wallets,
        enrolments_per_hour: args.rate_limit_enrolments,
        approvals_per_hour: args.rate_limit_approvals,
        top_ups_per_hour: args.rate_limit_top_ups,
    };
    config.sessions.max_amount = args.max_amount;
    config.sessions.default_ttl_secs = args.session_ttl;
    anyhow::ensure!(
        args.sandbox_credit >= 0,
        "--sandbox-credit must not be negative"
    );
    anyhow::ensure!(args.hold_ttl > 0, "--hold-ttl must be positive");
    config.wallets.sandbox_credit_major = args.sandbox_credit;
    config.wallets.hold_ms = args.hold_ttl * 1000;
    anyhow::ensure!(
        args.header_timeout > 0 && args.body_timeout > 0,
        "--header-timeout and --body-timeout must be positive"
    );
    anyhow::ensure!(
        args.max_connections > 0,
        "--max-connections must be positive"
    );
    config.connections = ConnectionLimits {
        header_timeout: Duration::from_secs(args.header_timeout),
        body_timeout: Duration::from_secs(args.body_timeout),
        max_connections: args.max_connections,
    };
    anyhow::ensure!(
        args.auto_approvals_per_hour >= 0,
        "--auto-approvals-per-hour must not be negative"
    );
    config.wallets.auto_approvals_per_hour = args.auto_approvals_per_hour;
    anyhow::ensure!(
        args.webhook_timeout > 0,
        "--webhook-timeout must be positive"
    );
    config.webhooks.timeout = Duration::from_secs(args.webhook_timeout);
    config.webhooks.allow_private_urls = args.webhook_allow_private_urls;
    let first_key = services.bootstrap(clock.now_ms()).await?;
    let app = Application::build(config.clone(), services, clock).await?;
    let base = format!("http://{}", app.local_addr());
    println!(
        "walleot listening on {base} (database {})",
        config.database_url
    );
    match first_key {
        Some(key) => {
            let secret = key.expose_secret();
            println!();
            println!("Created the demo merchant and a test API key. It is shown only this once:");
            println!();
            println!("    {secret}");
            println!();
            println!("Try it:");
            println!();
            println!(
                "    curl -s {base}/v1/sessions -H 'Authorization: Bearer {secret}' \
                 -H 'Content-Type: application/json' \
                 -d '{{\"amount\":200,\"currency\":\"usd\",\"description\":\"Pro feature unlock\"}}'"
            );
            println!();
        }
        None => println!("More keys: walleot keys create --mode test"),
    }
    app.run_until(startup::shutdown_signal()).await
}
