//! Per-call prices on the tools of an [rmcp](https://docs.rs/rmcp) MCP server, paid
//! through Walleot.
//!
//! ```no_run
//! # fn demo<S: rmcp::ServerHandler>(my_server: S) -> Result<(), Box<dyn std::error::Error>> {
//! use walleot_mcp::{Mode, Walleot};
//! let walleot = Walleot::from_env()?            // WALLEOT_API_KEY, WALLEOT_API_URL
//!     .mode(Mode::TwoStep)
//!     .price("premium_analysis", "0.50", "USD")?;
//! let server = walleot.wrap(my_server);         // serve it over any rmcp transport
//! # let _ = server; Ok(()) }
//! ```
//!
//! A payment is bound to the tool, its price, a canonical hash of the arguments and,
//! where the server authenticates its users, the subject: it cannot pay for another
//! tool, other arguments or another user. The payment id handed to the client is a
//! secret of its own, never shown in the checkout link: holding it is the right to
//! confirm, from any MCP session. The tool runs at most once per payment, also under
//! concurrent confirmations, and its result is handed out only once the payment is
//! captured. Payments use manual capture: the payer's funds are held when approved,
//! captured after the tool succeeds and released after it fails, so nobody pays for a
//! failed call.

mod answers;
pub mod customer;
mod flows;
mod mode;
mod paid;
mod price;
mod seal;
pub mod store;

pub use mode::Mode;
pub use paid::{confirm_tool_name, Paid, RECEIPT_META};
pub use price::{with_cost, Price, PriceError, COST_META};

use rmcp::service::{RequestContext, RoleServer};
use rmcp::ServerHandler;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use store::{MemoryStore, PaymentStore};

/// The service's address when `WALLEOT_API_URL` is not set: where `walleot serve` listens.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8080";

/// Names the authenticated subject of a request, for servers that authenticate users.
pub type Identify = Arc<dyn Fn(&RequestContext<RoleServer>) -> Option<String> + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    #[error("WALLEOT_API_KEY is not set")]
    MissingKey,
    #[error(transparent)]
    Client(#[from] walleot_client::Error),
}

/// Prices, mode and service connection; [`Walleot::wrap`] applies them to a server.
#[derive(Clone)]
pub struct Walleot {
    client: walleot_client::Client,
    prices: HashMap<String, Price>,
    mode: Mode,
    store: Arc<dyn PaymentStore>,
    identify: Option<Identify>,
    /// The customer reference of a stdio server's one user (see [`Walleot::customer`]).
    customer: Option<String>,
    poll_every: Duration,
    wait_for_payment: Duration,
    payment_ttl: Duration,
    max_open_per_caller: usize,
    max_open: usize,
    /// Seals the request state of MCP 2026-07-28 round trips.
    state_secret: Arc<Vec<u8>>,
    /// DYNAMIC_TOOLS: the open payments of each caller, by tool, shared by every
    /// instance (stateless HTTP makes one per request).
    open: Arc<flows::dynamic_tools::OpenConfirms>,
    /// DYNAMIC_TOOLS on MCP 2026-07-28: changes of tool lists, for `listen` streams.
    changes: tokio::sync::broadcast::Sender<()>,
    /// Input schemas of the priced tools, compiled once.
    validators: Arc<std::sync::Mutex<HashMap<String, Arc<jsonschema::Validator>>>>,
}

/// How long a payment link stays payable, unless set with [`Walleot::payment_ttl`].
pub const DEFAULT_PAYMENT_TTL: Duration = Duration::from_secs(30 * 60);
/// Unpaid payments one caller may have open at once, unless set with
/// [`Walleot::max_open_per_caller`].
pub const DEFAULT_MAX_OPEN_PER_CALLER: usize = 10;
/// Unpaid payments open at once on the whole server, unless set with
/// [`Walleot::max_open`].
pub const DEFAULT_MAX_OPEN: usize = 1_000;

impl Walleot {
    /// `api_url` is the service's address (`http://127.0.0.1:8080`), with or without `/v1`.
    pub fn new(api_url: &str, api_key: &str) -> Result<Self, SetupError> {
        let client = walleot_client::Client::builder(api_url, api_key)
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Walleot {
            client,
            prices: HashMap::new(),
            mode: Mode::default(),
            store: Arc::new(MemoryStore::new()),
            identify: None,
            customer: None,
            poll_every: Duration::from_secs(20),
            wait_for_payment: Duration::from_secs(300),
            payment_ttl: DEFAULT_PAYMENT_TTL,
            max_open_per_caller: DEFAULT_MAX_OPEN_PER_CALLER,
            max_open: DEFAULT_MAX_OPEN,
            state_secret: Arc::new(uuid::Uuid::new_v4().as_bytes().repeat(2)),
            open: Default::default(),
            changes: tokio::sync::broadcast::channel(64).0,
            validators: Default::default(),
        })
    }

    /// Reads `WALLEOT_API_KEY` and `WALLEOT_API_URL` (default [`DEFAULT_API_URL`]).
    /// With them, the customer reference of a stdio server: `WALLEOT_CUSTOMER`, else the
    /// installation's own ([`installation_customer`]).
    pub fn from_env() -> Result<Self, SetupError> {
        let key = std::env::var("WALLEOT_API_KEY").map_err(|_| SetupError::MissingKey)?;
        let url = std::env::var("WALLEOT_API_URL").unwrap_or_else(|_| DEFAULT_API_URL.to_string());
        let customer = std::env::var("WALLEOT_CUSTOMER")
            .ok()
            .filter(|c| customer::is_valid(c))
            .or_else(customer::installation_customer);
        Ok(Self::new(&url, &key)?.customer_reference(customer))
    }

    /// The customer reference sent with the payments of a stdio server, whose one
    /// connection is its one user: a mandate the payer granted for it pays that user's
    /// calls at once. Over HTTP the reference is the subject [`Walleot::identify`]
    /// names, and without one there is none.
    pub fn customer(self, reference: &str) -> Self {
        let reference = customer::is_valid(reference).then(|| reference.to_string());
        self.customer_reference(reference)
    }

    fn customer_reference(mut self, reference: Option<String>) -> Self {
        self.customer = reference;
        self
    }

    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Puts a price on a tool, in major units as people write them: `"0.50", "USD"`.
    pub fn price(mut self, tool: &str, amount: &str, currency: &str) -> Result<Self, PriceError> {
        self.prices
            .insert(tool.to_string(), Price::parse(amount, currency)?);
        Ok(self)
    }

    /// Prices a tool "up to" `amount`: the payer approves (and has held) that much, the
    /// tool's result names what the call used with [`with_cost`], and only that is
    /// captured; the rest goes back to the payer. A result that names no cost costs the
    /// whole amount; one that names 0 costs nothing.
    pub fn price_up_to(
        mut self,
        tool: &str,
        amount: &str,
        currency: &str,
    ) -> Result<Self, PriceError> {
        let price = Price {
            up_to: true,
            ..Price::parse(amount, currency)?
        };
        self.prices.insert(tool.to_string(), price);
        Ok(self)
    }

    /// Where pending payments are kept (in memory by default).
    pub fn store(mut self, store: Arc<dyn PaymentStore>) -> Self {
        self.store = store;
        self
    }

    /// Binds payments to the authenticated subject this function names, instead of the
    /// MCP session.
    pub fn identify(mut self, identify: Identify) -> Self {
        self.identify = Some(identify);
        self
    }

    /// How long one wait for the payer lasts before a waiting call (PROGRESS mode, or
    /// elicitation on a long wait) sends progress again (20 s by default). The wait is a
    /// long poll: a payment is seen as soon as it is made, whatever this is.
    pub fn poll_every(mut self, every: Duration) -> Self {
        self.poll_every = every;
        self
    }

    /// How long a payment link stays payable (30 minutes by default; the service
    /// accepts 60 s to 7 days). An unpaid payment stops counting against the caps below
    /// when its link expires.
    pub fn payment_ttl(mut self, ttl: Duration) -> Self {
        self.payment_ttl = ttl;
        self
    }

    /// How many unpaid payments one caller (subject, MCP session, stdio connection, or
    /// over HTTP without a session its `Authorization` credential) may have open at once
    /// (10 by default). Past it a priced call is refused without asking the service, so
    /// that one caller cannot spend the merchant key's rate budget for everyone.
    /// Stateless requests without a credential have no caller to count by: name one
    /// with [`Walleot::identify`].
    pub fn max_open_per_caller(mut self, max: usize) -> Self {
        self.max_open_per_caller = max;
        self
    }

    /// How many unpaid payments may be open on the whole server at once (1,000 by
    /// default).
    pub fn max_open(mut self, max: usize) -> Self {
        self.max_open = max;
        self
    }

    /// How long a call waits for a payer (PROGRESS mode) or for a concurrent run.
    pub fn wait_for_payment(mut self, wait: Duration) -> Self {
        self.wait_for_payment = wait;
        self
    }

    /// The key that seals request state in MCP 2026-07-28 round trips. A random one is
    /// made per process; set one shared by all instances behind a balancer.
    pub fn state_secret(mut self, secret: &[u8]) -> Self {
        self.state_secret = Arc::new(secret.to_vec());
        self
    }

    /// The server with its priced tools paid through Walleot. Call once per connection
    /// (an HTTP transport's factory calls it once per session).
    pub fn wrap<S: ServerHandler>(&self, server: S) -> Paid<S> {
        Paid::new(server, Arc::new(self.clone()))
    }
}
