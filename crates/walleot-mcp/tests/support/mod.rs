//! The harness of the end-to-end tests: the real Walleot service on a random port, an
//! rmcp server with priced tools served over streamable HTTP, a real rmcp client that
//! records what the server sends it, and payers paying through the test helper or the
//! real checkout pages.

#![allow(dead_code)]

use rmcp::handler::server::router::tool::ToolRouter;
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleClient, RunningService};
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{tool, tool_handler, tool_router, ClientHandler, ServerHandler, ServiceExt};
use serde::Deserialize;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use walleot_mcp::{Mode, Walleot};
use walleot_server::testing::{CheckoutPayer, TestServer};

/// The prices of the test tools, on the given service.
pub fn paywall(service: &TestServer, mode: Mode, api_url: Option<&str>) -> Walleot {
    Walleot::new(api_url.unwrap_or(&service.base_url), &service.test_key)
        .unwrap()
        .mode(mode)
        .poll_every(Duration::from_millis(50))
        .wait_for_payment(Duration::from_secs(10))
        .price("add", "0.19", "USD")
        .unwrap()
        .price("premium_analysis", "0.50", "USD")
        .unwrap()
        .price("flaky", "0.10", "USD")
        .unwrap()
        .price_up_to("metered", "0.50", "USD")
        .unwrap()
}

/// Serves the test tools, priced by `walleot`, over streamable HTTP on a random port.
pub async fn serve_mcp(
    walleot: Walleot,
    runs: Arc<AtomicUsize>,
) -> (String, tokio::task::JoinHandle<()>) {
    serve_mcp_with(walleot, runs, StreamableHttpServerConfig::default()).await
}

pub async fn serve_mcp_with(
    walleot: Walleot,
    runs: Arc<AtomicUsize>,
    config: StreamableHttpServerConfig,
) -> (String, tokio::task::JoinHandle<()>) {
    let mcp = StreamableHttpService::new(
        move || {
            Ok(walleot.wrap(Tools {
                tool_router: Tools::tool_router(),
                runs: runs.clone(),
            }))
        },
        Arc::new(LocalSessionManager::default()),
        config,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let task = tokio::spawn(async move {
        axum::serve(listener, axum::Router::new().nest_service("/mcp", mcp))
            .await
            .unwrap();
    });
    (url, task)
}

/// Tools that count their runs.
#[derive(Clone)]
pub struct Tools {
    pub tool_router: ToolRouter<Self>,
    pub runs: Arc<AtomicUsize>,
}

#[derive(Deserialize, rmcp::schemars::JsonSchema)]
pub struct AddArgs {
    pub a: f64,
    pub b: f64,
}

#[derive(Deserialize, rmcp::schemars::JsonSchema)]
pub struct DataArgs {
    pub data: String,
}

#[derive(Deserialize, rmcp::schemars::JsonSchema)]
pub struct UnitsArgs {
    pub units: i64,
}

#[tool_router]
impl Tools {
    #[tool(description = "Answers pong. Free.")]
    pub async fn ping(&self) -> String {
        "pong".into()
    }

    #[tool(description = "Adds two numbers.")]
    pub async fn add(&self, Parameters(AddArgs { a, b }): Parameters<AddArgs>) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(30)).await;
        (a + b).to_string()
    }

    #[tool(description = "Advanced data analysis.")]
    pub async fn premium_analysis(
        &self,
        Parameters(DataArgs { data }): Parameters<DataArgs>,
    ) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("{} characters", data.len())
    }

    #[tool(description = "Uses as many cents as it is asked to, up to its price.")]
    pub async fn metered(
        &self,
        Parameters(UnitsArgs { units }): Parameters<UnitsArgs>,
    ) -> CallToolResult {
        self.runs.fetch_add(1, Ordering::SeqCst);
        walleot_mcp::with_cost(
            CallToolResult::success(vec![ContentBlock::text(format!("used {units}"))]),
            units,
        )
    }

    #[tool(description = "Always fails.")]
    pub async fn flaky(&self) -> Result<String, String> {
        self.runs.fetch_add(1, Ordering::SeqCst);
        Err("the upstream is down".into())
    }
}

#[tool_handler(router = self.tool_router, name = "test-tools", version = "0.1.0")]
impl ServerHandler for Tools {}

pub struct Setup {
    pub service: TestServer,
    pub mcp_url: String,
    pub runs: Arc<AtomicUsize>,
    pub http: reqwest::Client,
}

impl Setup {
    pub async fn start(mode: Mode) -> Self {
        Self::start_with(mode, None).await
    }

    /// `api_url` overrides the service address (to test a service that is down).
    pub async fn start_with(mode: Mode, api_url: Option<String>) -> Self {
        let service = TestServer::start().await;
        let walleot = paywall(&service, mode, api_url.as_deref());
        Self::serve(service, walleot).await
    }

    /// The test tools priced by `walleot`, paid through `service`.
    pub async fn serve(service: TestServer, walleot: Walleot) -> Self {
        let runs = Arc::new(AtomicUsize::new(0));
        let (mcp_url, _) = serve_mcp(walleot, runs.clone()).await;
        Setup {
            service,
            mcp_url,
            runs,
            http: reqwest::Client::new(),
        }
    }

    pub async fn client(&self) -> RunningService<RoleClient, Recorder> {
        Recorder::default()
            .serve(StreamableHttpClientTransport::from_uri(
                self.mcp_url.clone(),
            ))
            .await
            .unwrap()
    }

    pub async fn pay(&self, payment_id: &str) {
        let paid = self
            .http
            .post(format!(
                "{}/v1/test_helpers/sessions/{payment_id}/pay",
                self.service.base_url
            ))
            .bearer_auth(&self.service.test_key)
            .send()
            .await
            .unwrap();
        assert_eq!(paid.status(), 200);
    }

    pub async fn session(&self, payment_id: &str) -> Value {
        session_at(&self.service, payment_id).await
    }

    pub async fn merchant_balance(&self) -> i64 {
        let accounts = self
            .service
            .wallets()
            .merchant_accounts(&self.service.merchant_id, false)
            .await
            .unwrap();
        accounts.first().map(|a| a.balance()).unwrap_or(0)
    }
}

/// A client that records what the server sends it, declares the elicitation modes it is
/// told to, and answers elicitations as a payer would: it pays, then accepts (or
/// declines).
#[derive(Default, Clone)]
pub struct Recorder {
    pub progress: Arc<Mutex<Vec<String>>>,
    pub elicitations: Arc<Mutex<Vec<String>>>,
    pub list_changes: Arc<AtomicUsize>,
    pub completions: Arc<Mutex<Vec<Value>>>,
    pub elicitation: Option<ElicitationCapability>,
    /// Service address and test key, to pay through the test helper.
    pub payer: Option<(String, String)>,
    /// Or a payer with a wallet, paying through the real checkout pages.
    pub checkout: Option<Arc<tokio::sync::Mutex<CheckoutPayer>>>,
    pub decline: bool,
    /// Dismisses the request without an answer, as a client whose user closed it.
    pub dismiss: bool,
    /// Accepts the form without paying, ticking `paid: false`.
    pub unpaid: bool,
}

impl Recorder {
    pub fn eliciting(setup: &Setup, form: bool, url: bool) -> Self {
        let mut capability = ElicitationCapability::new();
        if form {
            capability = capability.with_form(FormElicitationCapability::new());
        }
        if url {
            capability = capability.with_url(UrlElicitationCapability::new());
        }
        Recorder {
            elicitation: Some(capability),
            payer: Some((
                setup.service.base_url.clone(),
                setup.service.test_key.clone(),
            )),
            ..Recorder::default()
        }
    }
}

impl ClientHandler for Recorder {
    fn get_info(&self) -> ClientConfig {
        let mut capabilities = ClientCapabilities::default();
        capabilities.elicitation = self.elicitation.clone();
        ClientConfig::new(
            capabilities,
            Implementation::new("walleot-test-client", "0.1.0"),
        )
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.progress
            .lock()
            .unwrap()
            .push(params.message.unwrap_or_default());
    }

    async fn on_tool_list_changed(&self, _context: NotificationContext<RoleClient>) {
        self.list_changes.fetch_add(1, Ordering::SeqCst);
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        _context: NotificationContext<RoleClient>,
    ) {
        if notification.method == "notifications/elicitation/complete" {
            self.completions
                .lock()
                .unwrap()
                .push(notification.params.unwrap_or(Value::Null));
        }
    }

    async fn create_elicitation(
        &self,
        request: ElicitRequestParams,
        _context: RequestContext<RoleClient>,
    ) -> Result<ElicitResult, rmcp::ErrorData> {
        let (kind, message) = match &request {
            ElicitRequestParams::UrlElicitationParams { url, .. } => ("url", url.clone()),
            ElicitRequestParams::FormElicitationParams { message, .. } => ("form", message.clone()),
            _ => ("other", String::new()),
        };
        self.elicitations
            .lock()
            .unwrap()
            .push(format!("{kind}: {message}"));
        if self.decline {
            return Ok(ElicitResult::new(ElicitationAction::Decline));
        }
        if self.dismiss {
            return Ok(ElicitResult::new(ElicitationAction::Cancel));
        }
        if self.unpaid {
            return Ok(
                ElicitResult::new(ElicitationAction::Accept).with_content(json!({"paid": false}))
            );
        }
        if let Some(payer) = &self.checkout {
            let url = match &request {
                ElicitRequestParams::UrlElicitationParams { url, .. } => url.clone(),
                _ => message
                    .split("Pay at ")
                    .nth(1)
                    .unwrap_or("")
                    .split(',')
                    .next()
                    .unwrap_or("")
                    .to_string(),
            };
            assert_eq!(payer.lock().await.pay(&url).await, "paid");
        } else if let Some((base, key)) = &self.payer {
            let id = message
                .split("/checkout/")
                .nth(1)
                .unwrap_or("")
                .split(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                .next()
                .unwrap_or("");
            reqwest::Client::new()
                .post(format!("{base}/v1/test_helpers/sessions/{id}/pay"))
                .bearer_auth(key)
                .send()
                .await
                .unwrap();
        }
        Ok(ElicitResult::new(ElicitationAction::Accept).with_content(json!({"paid": true})))
    }
}

/// Waits up to five seconds for `condition`, for notifications that arrive on their own.
pub async fn eventually(condition: impl Fn() -> bool) {
    for _ in 0..250 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

pub fn args(v: Value) -> JsonObject {
    v.as_object().unwrap().clone()
}

pub async fn call(
    client: &RunningService<RoleClient, Recorder>,
    tool: &str,
    arguments: Value,
) -> CallToolResult {
    client
        .call_tool(CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments)))
        .await
        .unwrap()
}

pub fn structured(result: &CallToolResult) -> Value {
    result.structured_content.clone().unwrap_or(Value::Null)
}

/// The `paymentId` of a payment-required answer.
pub fn payment_id_of(result: &CallToolResult) -> String {
    structured(result)["paymentId"]
        .as_str()
        .expect("a paymentId")
        .to_string()
}

/// The session a payment-required answer links to: the end of its `paymentUrl`.
pub fn session_of(result: &CallToolResult) -> String {
    session_in(&structured(result))
}

pub fn session_in(required: &Value) -> String {
    let url = required["paymentUrl"].as_str().expect("a paymentUrl");
    url.rsplit('/').next().unwrap().to_string()
}

pub fn text(result: &CallToolResult) -> String {
    result
        .content
        .iter()
        .filter_map(|c| c.as_text().map(|t| t.text.clone()))
        .collect::<Vec<_>>()
        .join("\n")
}

pub async fn client_as(setup: &Setup, recorder: Recorder) -> RunningService<RoleClient, Recorder> {
    recorder
        .serve(StreamableHttpClientTransport::from_uri(
            setup.mcp_url.clone(),
        ))
        .await
        .unwrap()
}

/// Opens an MCP 2026-07-28 session.
pub trait On2026: ClientHandler + Sized {
    async fn on_2026(self, url: &str) -> RunningService<RoleClient, Self> {
        use rmcp::{ClientLifecycleMode, ClientServiceExt};
        self.serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(url.to_string()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap()
    }
}

impl On2026 for Recorder {}

/// The authenticated subject: here simply the bearer token the MCP client sends.
pub fn bearer_subject() -> walleot_mcp::Identify {
    Arc::new(|cx: &RequestContext<rmcp::service::RoleServer>| {
        cx.extensions
            .get::<http::request::Parts>()?
            .headers
            .get("authorization")?
            .to_str()
            .ok()
            .map(str::to_string)
    })
}

pub async fn client_with_token(url: &str, token: &str) -> RunningService<RoleClient, Recorder> {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    let config = StreamableHttpClientTransportConfig::with_uri(url.to_string())
        .auth_header(token.to_string());
    Recorder::default()
        .serve(StreamableHttpClientTransport::from_config(config))
        .await
        .unwrap()
}

/// The session `id` as the service answers it.
pub async fn session_at(service: &TestServer, id: &str) -> Value {
    reqwest::Client::new()
        .get(format!("{}/v1/sessions/{id}", service.base_url))
        .bearer_auth(&service.test_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

pub async fn pay_with(service: &TestServer, session: &str) {
    let paid = reqwest::Client::new()
        .post(format!(
            "{}/v1/test_helpers/sessions/{session}/pay",
            service.base_url
        ))
        .bearer_auth(&service.test_key)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
}

pub fn stateless() -> StreamableHttpServerConfig {
    StreamableHttpServerConfig::default().with_legacy_session_mode(false)
}

pub async fn client_as_url(url: &str, recorder: Recorder) -> RunningService<RoleClient, Recorder> {
    recorder
        .serve(StreamableHttpClientTransport::from_uri(url.to_string()))
        .await
        .unwrap()
}

/// The example server as a child process speaking stdio, priced in `mode`, paid through
/// `service`. `cargo test` builds the example beside the test binaries.
pub fn example_child(service: &TestServer, mode: &str) -> rmcp::transport::TokioChildProcess {
    example_child_with(service, &["--mode", mode])
}

/// The example binary that `cargo test` builds beside the test binaries.
pub fn example_binary() -> std::path::PathBuf {
    let example = std::env::current_exe()
        .unwrap()
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/paid_server");
    assert!(
        example.exists(),
        "cargo test builds the example at {}",
        example.display()
    );
    example
}

/// The example server as a child process with these arguments.
pub fn example_child_with(
    service: &TestServer,
    args: &[&str],
) -> rmcp::transport::TokioChildProcess {
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    let (url, key) = (service.base_url.clone(), service.test_key.clone());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    TokioChildProcess::new(
        tokio::process::Command::new(example_binary()).configure(|cmd| {
            cmd.args(&args)
                .env("WALLEOT_API_URL", &url)
                .env("WALLEOT_API_KEY", &key)
                // The installation's customer reference is kept here, not in $HOME.
                .env("WALLEOT_STATE_DIR", env!("CARGO_TARGET_TMPDIR"))
                .env("RUST_LOG", "error");
        }),
    )
    .unwrap()
}

/// The example server over stdio, as an MCP 2026-07-28 session.
pub async fn example_on_2026(
    service: &TestServer,
    mode: &str,
    recorder: Recorder,
) -> RunningService<RoleClient, Recorder> {
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let child = example_child(service, mode);
    recorder
        .serve_with_lifecycle(
            child,
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap()
}

/// Waits for the first progress message carrying a payment link, then pays it with
/// `pay` (given the message); returns what `pay` returns.
pub fn pay_when_shown<F, Fut, T>(
    progress: Arc<Mutex<Vec<String>>>,
    pay: F,
) -> tokio::task::JoinHandle<T>
where
    F: FnOnce(String) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = T> + Send,
    T: Send + 'static,
{
    tokio::spawn(async move {
        for _ in 0..1500 {
            let first = progress.lock().unwrap().first().cloned();
            if let Some(message) = first {
                return pay(message).await;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("no progress notification with a payment link arrived");
    })
}

/// Pays, through the test helper, the session a progress message links to.
pub async fn pay_linked(base_url: String, key: String, message: String) {
    let id = message.rsplit('/').next().unwrap().to_string();
    let paid = reqwest::Client::new()
        .post(format!("{base_url}/v1/test_helpers/sessions/{id}/pay"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
}

/// The client a mode needs: one that answers elicitations by paying, or a plain one.
pub fn recorder_for(mode: &str, service: &TestServer) -> Recorder {
    match mode {
        "elicitation" | "auto" => Recorder {
            elicitation: Some(
                ElicitationCapability::new().with_url(UrlElicitationCapability::new()),
            ),
            payer: Some((service.base_url.clone(), service.test_key.clone())),
            ..Recorder::default()
        },
        _ => Recorder::default(),
    }
}

/// Calls `add(2, 5)` in `mode`, pays through the test helper as the mode asks, and
/// returns the tool's answer. Where the server cannot elicit (`elicits` false), the
/// elicitation modes answer in two steps.
pub async fn paid_add(
    elicits: bool,
    mode: &str,
    client: &RunningService<RoleClient, Recorder>,
    recorder: &Recorder,
    service: &TestServer,
) -> String {
    let arguments = json!({"a": 2, "b": 5});
    let mode = match mode {
        "elicitation" | "auto" if !elicits => "two-step",
        other => other,
    };
    match mode {
        "two-step" | "dynamic-tools" => {
            let required = structured(&call(client, "add", arguments).await);
            let payment_id = required["paymentId"].as_str().unwrap().to_string();
            pay_with(service, &session_in(&required)).await;
            text(
                &call(
                    client,
                    "confirm_add_payment",
                    json!({"payment_id": payment_id}),
                )
                .await,
            )
        }
        "resubmit" => {
            let required = structured(&call(client, "add", arguments).await);
            let payment_id = required["paymentId"].as_str().unwrap().to_string();
            pay_with(service, &session_in(&required)).await;
            text(
                &call(
                    client,
                    "add",
                    json!({"a": 2, "b": 5, "payment_id": payment_id}),
                )
                .await,
            )
        }
        "elicitation" | "auto" => text(&call(client, "add", arguments).await),
        "progress" => {
            let (url, key) = (service.base_url.clone(), service.test_key.clone());
            let paying = pay_when_shown(recorder.progress.clone(), move |message| {
                pay_linked(url, key, message)
            });
            let answer = text(&call(client, "add", arguments).await);
            paying.await.unwrap();
            answer
        }
        other => panic!("no such mode {other}"),
    }
}

pub const MODES: [&str; 6] = [
    "two-step",
    "resubmit",
    "elicitation",
    "progress",
    "dynamic-tools",
    "auto",
];
