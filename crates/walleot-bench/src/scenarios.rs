//! The measurements. Each returns rows of the report; every figure names its baseline.

use crate::load;
use crate::process::{walleot, Server};
use crate::Args;
use serde_json::json;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One line of the report.
pub(crate) struct Row {
    what: String,
    value: String,
    baseline: String,
    ratio: String,
}

pub(crate) fn row(
    what: impl Into<String>,
    value: impl Into<String>,
    baseline: impl Into<String>,
    ratio: impl Into<String>,
) -> Row {
    Row {
        what: what.into(),
        value: value.into(),
        baseline: baseline.into(),
        ratio: ratio.into(),
    }
}

pub(crate) fn ratio(a: f64, b: f64) -> String {
    format!("{:.2}", a / b)
}

pub(crate) fn latency(stats: &load::Stats) -> String {
    format!(
        "p50 {:.2} ms, p99 {:.2} ms",
        stats.percentile_ms(0.5),
        stats.percentile_ms(0.99)
    )
}

/// The minimal handler of the same framework, on the same route shape.
pub async fn baseline_server(listen: Option<String>) -> anyhow::Result<()> {
    use axum::routing::get;
    let app = axum::Router::new().route(
        "/v1/sessions/{id}",
        get(|| async { axum::Json(json!({"status": "pending"})) }),
    );
    let listener =
        tokio::net::TcpListener::bind(listen.as_deref().unwrap_or("127.0.0.1:0")).await?;
    println!("baseline listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(())
}

pub(crate) struct Service {
    pub(crate) server: Server,
    pub(crate) key: String,
}

/// `walleot serve` on a fresh SQLite file with rate limits out of the way.
fn start_service(
    dir: &std::path::Path,
    cpus: Option<&str>,
    key: Option<String>,
) -> anyhow::Result<Service> {
    let database_url = format!("sqlite://{}", dir.join("bench.db").display());
    start_service_on(&database_url, cpus, key)
}

/// `walleot serve` on `database_url` with rate limits out of the way; a new test key
/// unless one is given.
pub(crate) fn start_service_on(
    database_url: &str,
    cpus: Option<&str>,
    key: Option<String>,
) -> anyhow::Result<Service> {
    let key = match key {
        Some(k) => k,
        None => walleot(&[
            "keys",
            "create",
            "--mode",
            "test",
            "--database-url",
            database_url,
        ])?
        .trim()
        .to_string(),
    };
    let server = Server::start(
        &[
            "walleot",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            database_url,
            "--rate-limit-status",
            "1000000000",
            "--rate-limit-sessions",
            "1000000000",
        ],
        cpus,
    )?;
    Ok(Service { server, key })
}

/// Sends a request and reads its whole answer; true for a 2xx.
async fn succeeded(request: reqwest::RequestBuilder) -> bool {
    match request.send().await {
        Ok(response) => {
            let ok = response.status().is_success();
            response.bytes().await.is_ok() && ok
        }
        Err(_) => false,
    }
}

pub(crate) fn http(concurrency: usize) -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency * 2)
        .build()
        .expect("an HTTP client")
}

pub(crate) async fn create_sessions(
    http: &reqwest::Client,
    service: &Service,
    n: usize,
) -> anyhow::Result<Vec<String>> {
    let mut ids = Vec::with_capacity(n);
    for _ in 0..n {
        let body: serde_json::Value = http
            .post(format!("{}/v1/sessions", service.server.base))
            .bearer_auth(&service.key)
            .json(&json!({"amount": 200, "currency": "usd"}))
            .send()
            .await?
            .json()
            .await?;
        ids.push(body["sessionId"].as_str().unwrap_or_default().to_string());
    }
    Ok(ids)
}

async fn status_load(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    ids: Arc<Vec<String>>,
    args: &Args,
) -> load::Stats {
    status_load_across(http, &[base.to_string()], key, ids, args).await
}

/// Status checks spread over the instances at `bases`, one after another.
pub(crate) async fn status_load_across(
    http: &reqwest::Client,
    bases: &[String],
    key: &str,
    ids: Arc<Vec<String>>,
    args: &Args,
) -> load::Stats {
    let (http, bases, key) = (http.clone(), bases.to_vec(), key.to_string());
    load::run(args.concurrency, args.duration(), move |i| {
        let base = &bases[i as usize % bases.len()];
        let request = http
            .get(format!(
                "{base}/v1/sessions/{}",
                ids[i as usize % ids.len()]
            ))
            .bearer_auth(&key);
        async move { succeeded(request).await }
    })
    .await
}

/// Session creations spread over the instances at `bases`.
pub(crate) async fn creation_load_across(
    http: &reqwest::Client,
    bases: &[String],
    key: &str,
    args: &Args,
) -> load::Stats {
    let (http, bases, key) = (http.clone(), bases.to_vec(), key.to_string());
    load::run(args.concurrency, args.duration(), move |i| {
        let base = &bases[i as usize % bases.len()];
        let request = http
            .post(format!("{base}/v1/sessions"))
            .bearer_auth(&key)
            .json(&json!({"amount": 200, "currency": "usd"}));
        async move { succeeded(request).await }
    })
    .await
}

/// The requests a paid TWO_STEP call makes of the service, sent one after another as
/// the Rust SDK sends them: the creation of a manual-capture session under an
/// idempotency key, then (once the payer paid, not timed) the status read and the
/// capture under an idempotency key. The mean time of the three, per call.
async fn paid_requests(
    http: &reqwest::Client,
    service: &Service,
    args: &Args,
) -> anyhow::Result<Row> {
    let rounds = if args.short { 200 } else { 1000 };
    let base = &service.server.base;
    let (mut create, mut status, mut capture) = (0.0, 0.0, 0.0);
    for round in 0..rounds {
        let started = Instant::now();
        let session: serde_json::Value = http
            .post(format!("{base}/v1/sessions"))
            .bearer_auth(&service.key)
            .header("Idempotency-Key", format!("create-{round}"))
            .json(&json!({"amount": 200, "currency": "usd", "captureMethod": "manual"}))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        create += started.elapsed().as_secs_f64();
        let id = session["sessionId"].as_str().unwrap_or_default();
        http.post(format!("{base}/v1/test_helpers/sessions/{id}/pay"))
            .bearer_auth(&service.key)
            .send()
            .await?
            .error_for_status()?;
        let started = Instant::now();
        let read: serde_json::Value = http
            .get(format!("{base}/v1/sessions/{id}"))
            .bearer_auth(&service.key)
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        anyhow::ensure!(read["captureStatus"] == "held", "not held: {read}");
        status += started.elapsed().as_secs_f64();
        let started = Instant::now();
        http.post(format!("{base}/v1/sessions/{id}/capture"))
            .bearer_auth(&service.key)
            .header("Idempotency-Key", format!("capture-{round}"))
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        capture += started.elapsed().as_secs_f64();
    }
    let ms = |seconds: f64| seconds * 1000.0 / rounds as f64;
    Ok(row(
        "the service's share of a paid TWO_STEP call (create and capture with an idempotency key, and the status read between, one after another)",
        format!(
            "{:.2} ms mean (create {:.2}, status {:.2}, capture {:.2}; {rounds} calls)",
            ms(create + status + capture),
            ms(create),
            ms(status),
            ms(capture)
        ),
        "-",
        "-",
    ))
}

/// Session creations over HTTP and charges through the ledger, each beside raw durable
/// one-row transactions on the same disk; with the creations measured.
async fn write_rows(
    client: &reqwest::Client,
    service: &Service,
    dir: &std::path::Path,
    args: &Args,
) -> anyhow::Result<(Vec<Row>, load::Stats)> {
    let mut rows = Vec::new();
    // Session creation with full durability against raw durable inserts.
    let creates = creation_load_across(
        client,
        std::slice::from_ref(&service.server.base),
        &service.key,
        args,
    )
    .await;
    let raw = raw_inserts(dir, args).await?;
    rows.push(row(
        "session creations/s (POST /v1/sessions, synchronous=FULL)",
        format!(
            "{:.0} ({}, {} errors)",
            creates.per_second(),
            latency(&creates),
            creates.errors
        ),
        format!(
            "{:.0} raw one-row transactions/s, same SQLite settings",
            raw.per_second()
        ),
        ratio(creates.per_second(), raw.per_second()),
    ));
    // Charges through the ledger: many payers, one merchant.
    let ledger_url = format!("sqlite://{}", dir.join("ledger.db").display());
    let (charges, per_second, sound) = charges(&ledger_url, args).await?;
    rows.push(row(
        format!("charges/s through the ledger ({charges} charges, 200 payers, one merchant)"),
        format!(
            "{per_second:.0}; ledger verified afterwards: {}",
            if sound { "consistent" } else { "MISMATCH" }
        ),
        format!("{:.0} raw one-row transactions/s", raw.per_second()),
        ratio(per_second, raw.per_second()),
    ));

    Ok((rows, creates))
}

pub async fn all(args: Args) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut rows = Vec::new();
    let dir = tempfile::tempdir()?;
    let client = http(args.concurrency);
    match args.only.as_deref() {
        Some("postgres") => {
            let table = crate::postgres::rows(&args).await?;
            let header = format!(
                "Command: `cargo run --release -p walleot-bench -- --only postgres{}`; machine: {} cores, {} MiB memory; {}; {:.0} s.\n\n",
                if args.short { " --short" } else { "" },
                std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
                memory_mib(),
                time::OffsetDateTime::now_utc().date(),
                started.elapsed().as_secs_f64(),
            );
            println!("{header}{}", markdown(&table));
            return Ok(());
        }
        Some("paid-requests") => {
            let service = start_service(dir.path(), None, None)?;
            let row = paid_requests(&client, &service, &args).await?;
            println!("| {} | {} |", row.what, row.value);
            return Ok(());
        }
        Some("webhooks") => {
            let service = start_service(dir.path(), None, None)?;
            for row in crate::webhooks::rows(&client, &service, &args).await? {
                println!(
                    "| {} | {} | {} | {} |",
                    row.what, row.value, row.baseline, row.ratio
                );
            }
            return Ok(());
        }
        Some("writes") => {
            let service = start_service(dir.path(), None, None)?;
            for row in write_rows(&client, &service, dir.path(), &args).await?.0 {
                println!(
                    "| {} | {} | {} | {} |",
                    row.what, row.value, row.baseline, row.ratio
                );
            }
            return Ok(());
        }
        _ => {}
    }

    // Status checks against a minimal handler of the same framework.
    let service = start_service(dir.path(), None, None)?;
    let (idle_rss, _) = service.server.memory_kib();
    let ids = Arc::new(create_sessions(&client, &service, 100).await?);
    let baseline = Server::start(&["baseline", "127.0.0.1:0"], None)?;
    let mut connections = vec![args.concurrency, 64];
    connections.dedup();
    for concurrency in connections {
        let args = Args {
            concurrency,
            ..args.clone()
        };
        let client = http(concurrency);
        let status = status_load(
            &client,
            &service.server.base,
            &service.key,
            ids.clone(),
            &args,
        )
        .await;
        let minimal = status_load(
            &client,
            &baseline.base,
            "",
            Arc::new(vec!["x".into()]),
            &args,
        )
        .await;
        rows.push(row(
            format!("status checks/s (GET /v1/sessions/{{id}}, {concurrency} connections)"),
            format!(
                "{:.0} ({}, {} errors)",
                status.per_second(),
                latency(&status),
                status.errors
            ),
            format!(
                "{:.0} ({}) minimal axum handler",
                minimal.per_second(),
                latency(&minimal)
            ),
            ratio(status.per_second(), minimal.per_second()),
        ));
    }
    drop(baseline);

    let (writes, creates) = write_rows(&client, &service, dir.path(), &args).await?;
    rows.extend(writes);
    let (rss, peak) = service.server.memory_kib();
    rows.push(row(
        "service memory (resident)",
        format!(
            "{} MiB idle; {} MiB now, {} MiB peak after the loads",
            idle_rss / 1024,
            rss / 1024,
            peak / 1024
        ),
        "-",
        "-",
    ));

    rows.push(paid_requests(&client, &service, &args).await?);

    // The cost of a price on an MCP tool, in each SDK.
    let (free, paid) = mcp_cost(&service, &args, false).await?;
    rows.push(row(
        "MCP tool call over streamable HTTP: paid (TWO_STEP: call, pay, confirm) vs free",
        format!("paid {:.2} ms mean", paid),
        format!("free {:.2} ms mean", free),
        ratio(paid, free),
    ));
    let (free, covered) = mcp_cost(&service, &args, true).await?;
    rows.push(row(
        "MCP tool call over streamable HTTP under a mandate (paid at creation, one round trip) vs free",
        format!("paid {covered:.2} ms mean"),
        format!("free {free:.2} ms mean"),
        ratio(covered, free),
    ));
    let database_url = format!("sqlite://{}", dir.path().join("bench.db").display());
    let (mandated, sound) = mandate_charges(&client, &service, &database_url, &args).await?;
    rows.push(row(
        "mandate charges/s (POST /v1/sessions paid at creation, one hot merchant and customer)",
        format!(
            "{:.0} ({}, {} not paid); ledger verified afterwards: {}",
            mandated.per_second(),
            latency(&mandated),
            mandated.errors,
            if sound { "consistent" } else { "MISMATCH" }
        ),
        format!("{:.0} plain session creations/s", creates.per_second()),
        ratio(mandated.per_second(), creates.per_second()),
    ));
    for (sdk, command) in example_servers(&args) {
        let what = format!("{sdk} over streamable HTTP: paid `add` (TWO_STEP) vs free `ping`");
        match example_cost(&service, &command, &args).await {
            Ok((free, paid)) => rows.push(row(
                what,
                format!("paid {paid:.2} ms mean"),
                format!("free {free:.2} ms mean"),
                ratio(paid, free),
            )),
            Err(e) => rows.push(row(what, format!("not measured: {e:#}"), "-", "-")),
        }
    }
    drop(service);

    // Scaling from one core to two.
    let mut scaled = Vec::new();
    for cpus in ["0", "0,1"] {
        let sub = tempfile::tempdir()?;
        let service = start_service(sub.path(), Some(cpus), None)?;
        let ids = Arc::new(create_sessions(&client, &service, 100).await?);
        scaled.push(
            status_load(&client, &service.server.base, &service.key, ids, &args)
                .await
                .per_second(),
        );
    }
    rows.push(row(
        "status checks/s with the service on 2 cores (taskset -c 0,1) vs 1 (-c 0)",
        format!("{:.0}", scaled[1]),
        format!("{:.0} on one core", scaled[0]),
        ratio(scaled[1], scaled[0]),
    ));

    // Size and status latency as sessions accumulate.
    let stored = stored_sessions(dir.path(), &client, &args).await?;
    rows.extend(stored);

    let table = markdown(&rows);
    let header = format!(
        "Command: `cargo run --release -p walleot-bench --{}`; machine: {} cores, {} MiB memory; {}; {:.0} s.\n\n",
        if args.short { " --short" } else { "" },
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        memory_mib(),
        time::OffsetDateTime::now_utc().date(),
        started.elapsed().as_secs_f64(),
    );
    let report = format!("{header}{table}");
    println!("{report}");
    if let Some(parent) = args.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(&args.out, report)?;
    Ok(())
}

/// The report's table.
fn markdown(rows: &[Row]) -> String {
    let mut table = String::new();
    let _ = writeln!(
        table,
        "| measurement | figure | baseline (same run) | ratio |"
    );
    let _ = writeln!(table, "|---|---|---|---|");
    for r in rows {
        let _ = writeln!(
            table,
            "| {} | {} | {} | {} |",
            r.what, r.value, r.baseline, r.ratio
        );
    }
    table
}

fn memory_mib() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("MemTotal:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0)
        / 1024
}

async fn sqlite(path: &std::path::Path, max: u32) -> anyhow::Result<sqlx::SqlitePool> {
    use sqlx::sqlite::{
        SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
    };
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .busy_timeout(Duration::from_secs(30));
    Ok(SqlitePoolOptions::new()
        .max_connections(max)
        .connect_with(options)
        .await?)
}

/// One-row durable transactions on the same settings as the service's store: the rate
/// the disk allows.
async fn raw_inserts(dir: &std::path::Path, args: &Args) -> anyhow::Result<load::Stats> {
    let pool = sqlite(&dir.join("raw.db"), 1).await?;
    sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, merchant TEXT, amount INTEGER, currency TEXT, status TEXT, created INTEGER)")
        .execute(&pool)
        .await?;
    Ok(load::run(args.concurrency, args.duration(), move |i| {
        let pool = pool.clone();
        async move {
            let Ok(mut tx) = pool.begin_with("BEGIN IMMEDIATE").await else {
                return false;
            };
            let inserted = sqlx::query("INSERT INTO t VALUES (?, 'mer', 200, 'usd', 'pending', 0)")
                .bind(format!("row-{i}"))
                .execute(&mut *tx)
                .await
                .is_ok();
            inserted && tx.commit().await.is_ok()
        }
    })
    .await)
}

/// Pays `n` sessions from 200 payers to one merchant, concurrently, in process on the
/// database at `url`; then recomputes the ledger.
pub(crate) async fn charges(url: &str, args: &Args) -> anyhow::Result<(usize, f64, bool)> {
    use walleot_server::domain::payers::ApprovalMethod;
    use walleot_server::domain::sessions::{SessionPolicy, Sessions};
    use walleot_server::domain::wallets::{WalletPolicy, Wallets};
    use walleot_server::domain::{Clock, Livemode, Principal, SystemClock};
    let n = if args.short { 3000 } else { 10000 };
    let services = walleot_server::startup::Services::open(url, Some("bench")).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let merchant = services
        .merchants
        .create("Hot merchant", clock.now_ms())
        .await?;
    let wallets = Wallets::new(
        services.store.clone(),
        clock.clone(),
        WalletPolicy {
            sandbox_credit_major: 1000,
            ..WalletPolicy::default()
        },
    );
    let sessions = Sessions::new(
        services.store.clone(),
        clock.clone(),
        SessionPolicy::default(),
        wallets.clone(),
        walleot_server::domain::mandates::Mandates::new(services.store.clone(), clock.clone()),
    );
    let owner = Principal {
        key_id: String::new(),
        merchant_id: merchant.id.clone(),
        merchant_name: merchant.name.clone(),
        mode: Livemode::Test,
    };
    let mut payers = Vec::new();
    for _ in 0..200 {
        payers.push(wallets.register().await?.id);
    }
    let mut ids = Vec::with_capacity(n);
    for i in 0..n {
        let request = walleot_api::CreateSessionRequest {
            amount: 1 + (i as i64 % 99),
            currency: "usd".into(),
            ..Default::default()
        };
        let session = sessions.prepare(&owner, request)?;
        sessions.insert(&session, None, None).await?;
        ids.push(session.id);
    }
    let ids = Arc::new(ids);
    let payers = Arc::new(payers);
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..args.concurrency)
        .map(|_| {
            let (wallets, store, ids, payers, next) = (
                wallets.clone(),
                services.store.clone(),
                ids.clone(),
                payers.clone(),
                next.clone(),
            );
            tokio::spawn(async move {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    if i >= ids.len() {
                        return;
                    }
                    // The session read, then charged, as a payment always is.
                    let Ok(Some(session)) = store.find_session(&ids[i]).await else {
                        continue;
                    };
                    let _ = wallets
                        .pay(
                            &session,
                            &payers[i % payers.len()],
                            ApprovalMethod::Auto,
                            None,
                        )
                        .await;
                }
            })
        })
        .collect();
    for worker in workers {
        worker.await?;
    }
    let per_second = n as f64 / started.elapsed().as_secs_f64();
    let sound = wallets.verify_ledger().await?.is_empty();
    Ok((n, per_second, sound))
}

/// A mandate for `customer` from the sandbox payer, through the test helpers: a session
/// naming the customer, paid, then the grant (0.20 a call at most, no budget).
async fn grant_mandate(
    http: &reqwest::Client,
    service: &Service,
    customer: &str,
) -> anyhow::Result<()> {
    let base = &service.server.base;
    let first: serde_json::Value = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(&service.key)
        .json(&json!({"amount": 19, "currency": "usd", "customer": customer}))
        .send()
        .await?
        .json()
        .await?;
    let id = first["sessionId"].as_str().unwrap_or_default();
    for (path, body) in [
        (format!("test_helpers/sessions/{id}/pay"), json!(null)),
        (
            format!("test_helpers/sessions/{id}/grant_mandate"),
            json!({"perCallLimit": 20}),
        ),
    ] {
        let mut request = http
            .post(format!("{base}/v1/{path}"))
            .bearer_auth(&service.key);
        if !body.is_null() {
            request = request.json(&body);
        }
        let answer = request.send().await?;
        anyhow::ensure!(answer.status().is_success(), "{path}: {}", answer.status());
    }
    Ok(())
}

/// Session creations per second for a customer a mandate covers, each paid at creation
/// through the ledger; whether every one was paid; and the ledger checked afterwards.
async fn mandate_charges(
    client: &reqwest::Client,
    service: &Service,
    database_url: &str,
    args: &Args,
) -> anyhow::Result<(load::Stats, bool)> {
    grant_mandate(client, service, "hot-agent").await?;
    let (http, base, key) = (
        client.clone(),
        service.server.base.clone(),
        service.key.clone(),
    );
    let charged = load::run(args.concurrency, args.duration(), move |_| {
        let request = http
            .post(format!("{base}/v1/sessions"))
            .bearer_auth(&key)
            .json(&json!({"amount": 19, "currency": "usd", "customer": "hot-agent"}));
        async move {
            match request.send().await {
                Ok(answer) => answer
                    .json::<serde_json::Value>()
                    .await
                    .is_ok_and(|s| s["status"] == "paid" && s["mandateId"].is_string()),
                Err(_) => false,
            }
        }
    })
    .await;
    let verified = walleot(&["ledger", "verify", "--database-url", database_url])?;
    Ok((charged, verified.contains("consistent")))
}

/// Mean latency of a free tool call and of a paid one (call, payment by the test helper,
/// confirmation) over streamable HTTP, against the running service; and, with
/// `mandate`, of a paid call a mandate covers (one round trip).
async fn mcp_cost(service: &Service, args: &Args, mandate: bool) -> anyhow::Result<(f64, f64)> {
    use rmcp::handler::server::router::tool::ToolRouter;
    use rmcp::handler::server::wrapper::Parameters;
    use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
    use rmcp::transport::streamable_http_server::{
        StreamableHttpServerConfig, StreamableHttpService,
    };
    use rmcp::{tool, tool_handler, tool_router, ServerHandler};

    #[derive(Clone)]
    struct Tools {
        tool_router: ToolRouter<Self>,
    }
    #[derive(serde::Deserialize, rmcp::schemars::JsonSchema)]
    struct AddArgs {
        a: i64,
        b: i64,
    }
    #[tool_router]
    impl Tools {
        #[tool(description = "Adds, free.")]
        async fn free_add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
            (a + b).to_string()
        }
        #[tool(description = "Adds, priced.")]
        async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
            (a + b).to_string()
        }
    }
    #[tool_handler(router = self.tool_router, name = "bench", version = "0.1.0")]
    impl ServerHandler for Tools {}

    let mut walleot = walleot_mcp::Walleot::new(&service.server.base, &service.key)?
        .price("add", "0.19", "USD")?;
    if mandate {
        // A server that authenticates its user: the subject is the mandate's customer.
        grant_mandate(&http(1), service, "bench-agent").await?;
        walleot = walleot.identify(Arc::new(|_| Some("bench-agent".to_string())));
    }
    let mcp = StreamableHttpService::new(
        move || {
            Ok(walleot.wrap(Tools {
                tool_router: Tools::tool_router(),
            }))
        },
        Arc::new(LocalSessionManager::default()),
        StreamableHttpServerConfig::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/mcp", listener.local_addr()?);
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, axum::Router::new().nest_service("/mcp", mcp)).await;
    });
    let free = ("free_add", json!({"a": 1, "b": 2}));
    let measured = if mandate {
        covered_round_trips(&url, free, args).await
    } else {
        round_trips(&url, service, free, args).await
    };
    server.abort();
    measured
}

/// Mean milliseconds of a free call, and of a paid call of `add` a mandate covers: one
/// round trip, the tool's result in it.
async fn covered_round_trips(
    url: &str,
    free: (&str, serde_json::Value),
    args: &crate::Args,
) -> anyhow::Result<(f64, f64)> {
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::ServiceExt;
    let client = ().serve(StreamableHttpClientTransport::from_uri(url.to_string())).await?;
    let rounds = if args.short { 50 } else { 200 };
    let object = |value: serde_json::Value| value.as_object().cloned().unwrap_or_default();
    let timed = |call: CallToolRequestParams| {
        let client = &client;
        async move {
            let started = Instant::now();
            for _ in 0..rounds {
                let answer = client.call_tool(call.clone()).await?;
                anyhow::ensure!(
                    answer.is_error != Some(true) && answer.structured_content.is_none(),
                    "the call did not run at once: {:?}",
                    answer.structured_content
                );
            }
            Ok(started.elapsed().as_secs_f64() * 1000.0 / rounds as f64)
        }
    };
    let free = timed(CallToolRequestParams::new(free.0.to_string()).with_arguments(object(free.1)))
        .await?;
    let paid =
        timed(CallToolRequestParams::new("add").with_arguments(object(json!({"a": 1, "b": 2}))))
            .await?;
    let _ = client.cancel().await;
    Ok((free, paid))
}

/// Mean milliseconds of a free call, and of a paid TWO_STEP round trip of `add` (call,
/// pay the session the link names, confirm), on the MCP server at `url`.
async fn round_trips(
    url: &str,
    service: &Service,
    free: (&str, serde_json::Value),
    args: &crate::Args,
) -> anyhow::Result<(f64, f64)> {
    use rmcp::model::CallToolRequestParams;
    use rmcp::transport::StreamableHttpClientTransport;
    use rmcp::ServiceExt;
    let client = ().serve(StreamableHttpClientTransport::from_uri(url.to_string())).await?;
    let http = http(1);
    let rounds = if args.short { 50 } else { 200 };
    let object = |value: serde_json::Value| value.as_object().cloned().unwrap_or_default();
    let arguments = object(json!({"a": 1, "b": 2}));
    let call =
        |name: &str| CallToolRequestParams::new(name.to_string()).with_arguments(arguments.clone());
    let free_call = CallToolRequestParams::new(free.0.to_string()).with_arguments(object(free.1));

    let started = Instant::now();
    for _ in 0..rounds {
        let answer = client.call_tool(free_call.clone()).await?;
        anyhow::ensure!(answer.is_error != Some(true), "the free call failed");
    }
    let free = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;

    let started = Instant::now();
    for _ in 0..rounds {
        let required = client.call_tool(call("add")).await?;
        let (id, link) = payment_request(&required);
        // The payer pays the session the checkout link names; the payment id is the
        // agent's secret, not the session.
        let session = link.rsplit('/').next().unwrap_or_default().to_string();
        let paid = http
            .post(format!(
                "{}/v1/test_helpers/sessions/{session}/pay",
                service.server.base
            ))
            .bearer_auth(&service.key)
            .send()
            .await?;
        anyhow::ensure!(
            paid.status().is_success(),
            "paying {session}: {}",
            paid.status()
        );
        let confirm = CallToolRequestParams::new("confirm_add_payment").with_arguments(
            json!({"payment_id": id})
                .as_object()
                .cloned()
                .unwrap_or_default(),
        );
        let done = client.call_tool(confirm).await?;
        anyhow::ensure!(
            done.is_error != Some(true),
            "the paid call did not run: {:?}",
            done.structured_content
        );
    }
    let paid = started.elapsed().as_secs_f64() * 1000.0 / rounds as f64;
    let _ = client.cancel().await;
    Ok((free, paid))
}

/// The paid example servers measured beside the Rust SDK, as commands, where their
/// builds are present: this repository's Python and Node SDKs, and the official PyPI
/// package. The first two take `--mode two-step --http ADDR`; the official one a port.
fn example_servers(args: &crate::Args) -> Vec<(&'static str, Vec<String>)> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let path = |p: std::path::PathBuf| p.display().to_string();
    let mut servers = Vec::new();
    if args.python_sdk.exists() {
        servers.push((
            "Python SDK's example",
            vec![
                path(args.python_sdk.clone()),
                path(root.join("sdks/python/examples/paid_server.py")),
            ],
        ));
    }
    if args.node_sdk.join("dist").exists() {
        servers.push((
            "Node SDK's example",
            vec![
                "node".into(),
                path(args.node_sdk.join("examples/paid_server.mjs")),
            ],
        ));
    }
    if args.official_walleot.exists() {
        servers.push((
            "official PyPI walleot 0.4.3 (paymcp)",
            vec![
                path(args.official_walleot.clone()),
                path(root.join("crates/walleot-bench/servers/official_walleot.py")),
            ],
        ));
    }
    servers
}

/// A free call and a paid round trip through an example server started from `command`.
async fn example_cost(
    service: &Service,
    command: &[String],
    args: &crate::Args,
) -> anyhow::Result<(f64, f64)> {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(&command[0]);
    child.args(&command[1..]);
    if command[1].ends_with("official_walleot.py") {
        let free = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        child.args(["--port", &free.to_string()]);
    } else {
        child.args(["--mode", "two-step", "--http", "127.0.0.1:0"]);
    }
    let mut child = child
        .env("WALLEOT_API_URL", &service.server.base)
        .env("WALLEOT_API_KEY", &service.key)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let mut lines = tokio::io::BufReader::new(child.stderr.take().expect("piped")).lines();
    let url = tokio::time::timeout(std::time::Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(at) = line.find("http://") {
                return Ok(line[at..].trim().to_string());
            }
        }
        anyhow::bail!("the example server exited before listening")
    })
    .await??;
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    // The address may be announced a moment before the server listens.
    let addr = url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    for _ in 0..200 {
        if tokio::net::TcpStream::connect(&addr).await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let measured = round_trips(&url, service, ("ping", json!({})), args).await;
    let _ = child.kill().await;
    measured
}

/// The payment id and checkout link of a payment request: in `structuredContent` as
/// this repository's SDKs answer (`paymentId`, `paymentUrl`), or as the official
/// package does (`payment_id`, `payment_url`, possibly only as JSON text).
fn payment_request(answer: &rmcp::model::CallToolResult) -> (String, String) {
    let text_json = || {
        answer.content.iter().find_map(|c| {
            c.as_text()
                .and_then(|t| serde_json::from_str::<serde_json::Value>(&t.text).ok())
        })
    };
    let fields = answer
        .structured_content
        .clone()
        .or_else(text_json)
        .unwrap_or_default();
    let field = |a: &str, b: &str| {
        fields[a]
            .as_str()
            .or(fields[b].as_str())
            .unwrap_or_default()
            .to_string()
    };
    (
        field("paymentId", "payment_id"),
        field("paymentUrl", "payment_url"),
    )
}

/// Database size per million sessions, and status latency with 10 thousand and with 1
/// million sessions stored (rows added directly, in large transactions, between runs).
async fn stored_sessions(
    dir: &std::path::Path,
    client: &reqwest::Client,
    args: &Args,
) -> anyhow::Result<Vec<Row>> {
    let sub = dir.join("stored");
    std::fs::create_dir_all(&sub)?;
    let key = {
        let service = start_service(&sub, None, None)?;
        let key = service.key.clone();
        drop(service);
        key
    };
    let path = sub.join("bench.db");
    let mut figures = Vec::new();
    let mut total = 0usize;
    for target in [10_000usize, 1_000_000] {
        fill(&path, total, target).await?;
        total = target;
        let size = std::fs::metadata(&path)?.len();
        let service = start_service(&sub, None, Some(key.clone()))?;
        let ids: Vec<String> = (0..100).map(|i| session_id(i * (target / 100))).collect();
        let stats = status_load(
            client,
            &service.server.base,
            &service.key,
            Arc::new(ids),
            args,
        )
        .await;
        figures.push((target, size, stats));
    }
    let (small, big) = (&figures[0], &figures[1]);
    let per_million = (big.1 - small.1) as f64 / (big.0 - small.0) as f64 * 1_000_000.0;
    Ok(vec![
        row(
            "database size per million sessions (with their creation events)",
            format!("{:.0} MiB", per_million / 1024.0 / 1024.0),
            "-",
            "-",
        ),
        row(
            "status checks with 1,000,000 sessions stored",
            format!("{:.0}/s ({})", big.2.per_second(), latency(&big.2)),
            format!(
                "{:.0}/s ({}) with 10,000 stored",
                small.2.per_second(),
                latency(&small.2)
            ),
            ratio(big.2.per_second(), small.2.per_second()),
        ),
    ])
}

fn session_id(i: usize) -> String {
    format!("sess_{i:024}")
}

/// Adds sessions `from..to` (and their creation events) to the service's database.
async fn fill(path: &std::path::Path, from: usize, to: usize) -> anyhow::Result<()> {
    let pool = sqlite(path, 1).await?;
    let merchant: String = sqlx::query_scalar("SELECT id FROM merchants LIMIT 1")
        .fetch_one(&pool)
        .await?;
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let mut i = from;
    while i < to {
        let end = (i + 50_000).min(to);
        let mut tx = pool.begin().await?;
        for n in i..end {
            let id = session_id(n);
            sqlx::query(
                "INSERT INTO sessions (id, merchant_id, livemode, amount, currency, description, status, \
                 created_at, expires_at, updated_at) VALUES (?, ?, 0, 200, 'usd', 'Bench', 'pending', ?, ?, ?)",
            )
            .bind(&id)
            .bind(&merchant)
            .bind(now)
            .bind(now + 86_400_000)
            .bind(now)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "INSERT INTO session_events (id, session_id, type, from_status, to_status, created_at) \
                 VALUES (?, ?, 'session.created', NULL, 'pending', ?)",
            )
            .bind(format!("evt_{n:024}"))
            .bind(&id)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        i = end;
    }
    sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await?;
    pool.close().await;
    Ok(())
}
