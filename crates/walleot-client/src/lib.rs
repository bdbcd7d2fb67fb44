//! A typed async client of the Walleot payment API (`/v1`).
//!
//! ```no_run
//! # async fn demo() -> Result<(), walleot_client::Error> {
//! use walleot_client::{Client, CreateSessionRequest};
//! let client = Client::new("http://127.0.0.1:8080", "sk_test_…")?;
//! let session = client
//!     .create_session(&CreateSessionRequest {
//!         amount: 200,
//!         currency: "usd".into(),
//!         description: Some("Pro feature unlock".into()),
//!         ..Default::default()
//!     })
//!     .await?;
//! println!("send the payer to {}", session.url);
//! let now = client.get_session(&session.session_id).await?;
//! println!("status: {}", now.status);
//! # Ok(()) }
//! ```
//!
//! Every call has a timeout. POSTs carry an `Idempotency-Key` that the client generates
//! (or that the caller gives), so that a retry after a lost answer never creates a
//! second session; network failures and 5xx answers are retried with backoff. A 429 is
//! not retried: the error says how long the service asked to wait
//! ([`Error::retry_after`]). [`Client::wait_session`] waits for a payment without
//! polling in a loop.

use reqwest::Method;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;
use url::Url;
mod receipts;
pub mod webhooks;

pub use receipts::{verify_receipt, ReceiptError};
pub use walleot_api::{
    CaptureMethod, CaptureRequest, CaptureStatus, CreateRefundRequest, CreateSessionRequest,
    Currency, ErrorBody, ErrorType, Event, EventList, Jwks, Receipt, ReceiptClaims, Refund,
    RefundList, RefundReason, Session, SessionList, SessionStatus,
};
pub use walleot_api::{
    CreateWebhookEndpointRequest, EventType, Redelivery, WebhookEndpoint, WebhookEndpointList,
    WebhookEndpointStatus,
};
pub use webhooks::{verify_webhook, WebhookError};

/// What can go wrong with a call.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The service answered with an error of the API's shape. A 429 reads "rate limited
    /// by the payment service, retry in N s"; see [`Error::retry_after`].
    #[error("{}", describe_api(*.status, .kind, .message, .retry_after))]
    Api {
        status: u16,
        kind: ErrorType,
        message: String,
        /// Seconds to wait, on a 429.
        retry_after: Option<u64>,
    },
    /// The service could not be reached, or did not answer in time.
    #[error("could not reach the Walleot API: {0}")]
    Transport(#[source] reqwest::Error),
    /// The answer was not what the API promises.
    #[error("unexpected answer from the Walleot API ({status}): {detail}")]
    Protocol { status: u16, detail: String },
    #[error("invalid client configuration: {0}")]
    Config(String),
}

impl Error {
    /// The API error type, when the service answered with one.
    pub fn kind(&self) -> Option<ErrorType> {
        match self {
            Error::Api { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// How long the service asked to wait before trying again (its `Retry-After`, sent
    /// with a 429). The client does not retry a 429 by itself.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::Api {
                retry_after: Some(secs),
                ..
            } => Some(Duration::from_secs(*secs)),
            _ => None,
        }
    }

    /// The HTTP status, when the service answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Api { status, .. } | Error::Protocol { status, .. } => Some(*status),
            _ => None,
        }
    }
}

fn describe_api(status: u16, kind: &ErrorType, message: &str, retry_after: &Option<u64>) -> String {
    match (status, retry_after) {
        (429, Some(secs)) => format!("rate limited by the payment service, retry in {secs} s"),
        (429, None) => "rate limited by the payment service, retry later".to_string(),
        _ => format!("{status} {kind}: {message}"),
    }
}

/// Filters and position of [`Client::list_sessions`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListSessions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<SessionStatus>,
}

/// Position of [`Client::list_events`].
#[derive(Debug, Clone, Default, Serialize)]
pub struct ListEvents {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cursor: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ClientBuilder {
    base_url: String,
    api_key: String,
    timeout: Duration,
    connect_timeout: Duration,
    max_retries: u32,
    initial_backoff: Duration,
}

impl ClientBuilder {
    /// Whole-request timeout (default 10 s).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Connection timeout (default 3 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Retries after a network failure or a 5xx answer (default 2).
    pub fn max_retries(mut self, retries: u32) -> Self {
        self.max_retries = retries;
        self
    }

    /// First wait before a retry; doubles each time (default 200 ms).
    pub fn initial_backoff(mut self, backoff: Duration) -> Self {
        self.initial_backoff = backoff;
        self
    }

    pub fn build(self) -> Result<Client, Error> {
        let mut base = Url::parse(self.base_url.trim_end_matches('/'))
            .map_err(|e| Error::Config(format!("base URL `{}`: {e}", self.base_url)))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(Error::Config(format!(
                "base URL `{}` is not http(s)",
                self.base_url
            )));
        }
        if !base.path().ends_with("/v1") {
            let path = format!("{}/v1", base.path().trim_end_matches('/'));
            base.set_path(&path);
        }
        let path = format!("{}/", base.path());
        base.set_path(&path);
        if self.api_key.is_empty() {
            return Err(Error::Config("the API key is empty".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(self.timeout)
            .connect_timeout(self.connect_timeout)
            .user_agent(concat!("walleot-client-rust/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(e.to_string()))?;
        Ok(Client {
            http,
            base,
            timeout: self.timeout,
            api_key: self.api_key,
            max_retries: self.max_retries,
            initial_backoff: self.initial_backoff,
        })
    }
}

/// A client bound to one service and one secret key. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: Url,
    /// The whole-request timeout of ordinary calls; long polls add their wait to it.
    timeout: Duration,
    api_key: String,
    max_retries: u32,
    initial_backoff: Duration,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client")
            .field("base", &self.base.as_str())
            .finish_non_exhaustive()
    }
}

impl Client {
    /// `base_url` is the service's address, with or without the trailing `/v1`.
    pub fn new(base_url: &str, api_key: &str) -> Result<Self, Error> {
        Self::builder(base_url, api_key).build()
    }

    pub fn builder(base_url: &str, api_key: &str) -> ClientBuilder {
        ClientBuilder {
            base_url: base_url.to_string(),
            api_key: api_key.to_string(),
            timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(3),
            max_retries: 2,
            initial_backoff: Duration::from_millis(200),
        }
    }

    /// Creates a payment session under a fresh idempotency key.
    pub async fn create_session(&self, request: &CreateSessionRequest) -> Result<Session, Error> {
        let key = new_idempotency_key();
        self.create_session_idempotent(request, &key).await
    }

    /// Creates a payment session under the caller's idempotency key: the same key and
    /// request give the same session, however often they are sent.
    pub async fn create_session_idempotent(
        &self,
        request: &CreateSessionRequest,
        idempotency_key: &str,
    ) -> Result<Session, Error> {
        self.call(
            Method::POST,
            "sessions",
            Some(request),
            Some(idempotency_key),
            None::<&()>,
        )
        .await
    }

    pub async fn get_session(&self, id: &str) -> Result<Session, Error> {
        self.call(
            Method::GET,
            &format!("sessions/{}", segment(id)),
            None::<&()>,
            None,
            None::<&()>,
        )
        .await
    }

    /// Waits up to `wait` (at most 60 s; longer waits are cut to 60 s, parts of a second
    /// count as a whole one) for a pending session to change status, then answers it: at
    /// once when it is paid, failed, cancelled or expired, else at the end of the wait,
    /// still pending. The call's timeout is `wait` plus the client's timeout.
    pub async fn wait_session(&self, id: &str, wait: Duration) -> Result<Session, Error> {
        let secs = wait
            .as_secs()
            .saturating_add(u64::from(wait.subsec_nanos() > 0))
            .min(MAX_WAIT_SECS);
        self.call_with_timeout(
            Method::GET,
            &format!("sessions/{}", segment(id)),
            None::<&()>,
            None,
            Some(&[("wait", secs)]),
            self.timeout + Duration::from_secs(secs),
        )
        .await
    }

    /// One page of sessions, newest first.
    pub async fn list_sessions(&self, query: &ListSessions) -> Result<SessionList, Error> {
        self.call(Method::GET, "sessions", None::<&()>, None, Some(query))
            .await
    }

    /// The events of the merchant's sessions, newest first.
    pub async fn list_events(&self, query: &ListEvents) -> Result<EventList, Error> {
        self.call(Method::GET, "events", None::<&()>, None, Some(query))
            .await
    }

    /// Cancels a pending session; cancelling a cancelled one changes nothing.
    pub async fn cancel_session(&self, id: &str) -> Result<Session, Error> {
        self.post_empty(&format!("sessions/{}/cancel", segment(id)))
            .await
    }

    /// Moves the held funds of a paid manual-capture session to the merchant.
    pub async fn capture_session(&self, id: &str) -> Result<Session, Error> {
        self.post_empty(&format!("sessions/{}/capture", segment(id)))
            .await
    }

    /// Captures `amount` of a session's held funds (metered use), the rest going back to
    /// the payer; under the caller's idempotency key when given, else a fresh one.
    pub async fn capture_session_amount(
        &self,
        id: &str,
        amount: i64,
        idempotency_key: Option<&str>,
    ) -> Result<Session, Error> {
        let key = idempotency_key.map_or_else(new_idempotency_key, str::to_string);
        let request = CaptureRequest {
            amount: Some(amount),
        };
        self.call(
            Method::POST,
            &format!("sessions/{}/capture", segment(id)),
            Some(&request),
            Some(&key),
            None::<&()>,
        )
        .await
    }

    /// Refunds a paid session: all that is left, or `request.amount`; under the
    /// caller's idempotency key when given (a retry then never refunds twice), else a
    /// fresh one.
    pub async fn refund_session(
        &self,
        id: &str,
        request: &CreateRefundRequest,
        idempotency_key: Option<&str>,
    ) -> Result<Refund, Error> {
        let key = idempotency_key.map_or_else(new_idempotency_key, str::to_string);
        self.call(
            Method::POST,
            &format!("sessions/{}/refunds", segment(id)),
            Some(request),
            Some(&key),
            None::<&()>,
        )
        .await
    }

    /// A session's refunds, oldest first.
    pub async fn list_refunds(&self, id: &str) -> Result<RefundList, Error> {
        self.call(
            Method::GET,
            &format!("sessions/{}/refunds", segment(id)),
            None::<&()>,
            None,
            None::<&()>,
        )
        .await
    }

    /// The signed receipt of a session whose payment was captured.
    pub async fn get_receipt(&self, id: &str) -> Result<Receipt, Error> {
        self.call(
            Method::GET,
            &format!("sessions/{}/receipt", segment(id)),
            None::<&()>,
            None,
            None::<&()>,
        )
        .await
    }

    /// The service's published receipt keys (`/.well-known/jwks.json`), for
    /// [`verify_receipt`]; keep them for a while rather than fetch them per receipt.
    pub async fn jwks(&self) -> Result<Jwks, Error> {
        self.call(
            Method::GET,
            "../.well-known/jwks.json",
            None::<&()>,
            None,
            None::<&()>,
        )
        .await
    }

    /// Adds a webhook endpoint; the answer holds its secret, shown this once.
    pub async fn create_webhook_endpoint(
        &self,
        request: &CreateWebhookEndpointRequest,
    ) -> Result<WebhookEndpoint, Error> {
        let key = new_idempotency_key();
        self.call(
            Method::POST,
            "webhook_endpoints",
            Some(request),
            Some(&key),
            None::<&()>,
        )
        .await
    }

    /// The webhook endpoints of the key's merchant and mode, without secrets.
    pub async fn list_webhook_endpoints(&self) -> Result<WebhookEndpointList, Error> {
        self.call(
            Method::GET,
            "webhook_endpoints",
            None::<&()>,
            None,
            None::<&()>,
        )
        .await
    }

    /// Removes a webhook endpoint.
    pub async fn delete_webhook_endpoint(&self, id: &str) -> Result<WebhookEndpoint, Error> {
        self.call(
            Method::DELETE,
            &format!("webhook_endpoints/{}", segment(id)),
            None::<&()>,
            None,
            None::<&()>,
        )
        .await
    }

    /// Enables again an endpoint that was disabled after failing for days.
    pub async fn enable_webhook_endpoint(&self, id: &str) -> Result<WebhookEndpoint, Error> {
        let key = new_idempotency_key();
        self.call(
            Method::POST,
            &format!("webhook_endpoints/{}/enable", segment(id)),
            None::<&()>,
            Some(&key),
            None::<&()>,
        )
        .await
    }

    /// Sends an event again to the endpoints that take it.
    pub async fn redeliver_event(&self, id: &str) -> Result<Redelivery, Error> {
        let key = new_idempotency_key();
        self.call(
            Method::POST,
            &format!("events/{}/redeliver", segment(id)),
            None::<&()>,
            Some(&key),
            None::<&()>,
        )
        .await
    }

    /// Returns the held funds of a paid manual-capture session to the payer.
    pub async fn release_session(&self, id: &str) -> Result<Session, Error> {
        self.post_empty(&format!("sessions/{}/release", segment(id)))
            .await
    }

    /// Test-mode helpers: act as the payer (or as time) on a test session.
    pub fn test_helpers(&self) -> TestHelpers<'_> {
        TestHelpers { client: self }
    }

    async fn post_empty(&self, path: &str) -> Result<Session, Error> {
        let key = new_idempotency_key();
        self.call(Method::POST, path, None::<&()>, Some(&key), None::<&()>)
            .await
    }

    async fn call<B: Serialize + ?Sized, Q: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
        query: Option<&Q>,
    ) -> Result<T, Error> {
        self.call_with_timeout(method, path, body, idempotency_key, query, self.timeout)
            .await
    }

    async fn call_with_timeout<
        B: Serialize + ?Sized,
        Q: Serialize + ?Sized,
        T: DeserializeOwned,
    >(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        idempotency_key: Option<&str>,
        query: Option<&Q>,
        timeout: Duration,
    ) -> Result<T, Error> {
        let url = self
            .base
            .join(path)
            .map_err(|e| Error::Config(format!("path `{path}`: {e}")))?;
        let mut attempt = 0;
        loop {
            let mut request = self
                .http
                .request(method.clone(), url.clone())
                .timeout(timeout)
                .bearer_auth(&self.api_key);
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = idempotency_key {
                request = request.header("Idempotency-Key", key);
            }
            if let Some(query) = query {
                request = request.query(query);
            }
            let outcome = match request.send().await {
                Ok(response) => read(response).await,
                Err(e) => Err(Error::Transport(e)),
            };
            // Without an idempotency key a POST is not safe to repeat.
            let repeatable = method == Method::GET || idempotency_key.is_some();
            match outcome {
                Err(e) if repeatable && attempt < self.max_retries && retryable(&e) => {
                    tokio::time::sleep(self.initial_backoff * 2u32.pow(attempt)).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }
}

pub struct TestHelpers<'a> {
    client: &'a Client,
}

impl TestHelpers<'_> {
    /// Pays the session as a sandbox payer would.
    pub async fn pay(&self, id: &str) -> Result<Session, Error> {
        self.client
            .post_empty(&format!("test_helpers/sessions/{}/pay", segment(id)))
            .await
    }

    /// Makes the payment fail.
    pub async fn fail(&self, id: &str) -> Result<Session, Error> {
        self.client
            .post_empty(&format!("test_helpers/sessions/{}/fail", segment(id)))
            .await
    }

    /// Expires the session now.
    pub async fn expire(&self, id: &str) -> Result<Session, Error> {
        self.client
            .post_empty(&format!("test_helpers/sessions/{}/expire", segment(id)))
            .await
    }
}

/// The longest wait the service accepts on a session read.
const MAX_WAIT_SECS: u64 = 60;

fn new_idempotency_key() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Escapes an id for use as one path segment.
fn segment(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

fn retryable(e: &Error) -> bool {
    match e {
        Error::Transport(_) => true,
        Error::Api { status, .. } | Error::Protocol { status, .. } => {
            matches!(*status, 500 | 502 | 503 | 504)
        }
        Error::Config(_) => false,
    }
}

async fn read<T: DeserializeOwned>(response: reqwest::Response) -> Result<T, Error> {
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let bytes = response.bytes().await.map_err(Error::Transport)?;
    if status.is_success() {
        return serde_json::from_slice(&bytes).map_err(|e| Error::Protocol {
            status: status.as_u16(),
            detail: format!("body does not parse: {e}"),
        });
    }
    match serde_json::from_slice::<ErrorBody>(&bytes) {
        Ok(body) => Err(Error::Api {
            status: status.as_u16(),
            kind: body.error.kind,
            message: body.error.message,
            retry_after,
        }),
        Err(_) => Err(Error::Protocol {
            status: status.as_u16(),
            detail: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base_urls_gain_v1_once() {
        for raw in [
            "http://h:1",
            "http://h:1/",
            "http://h:1/v1",
            "http://h:1/v1/",
        ] {
            let c = Client::new(raw, "sk_test_x").unwrap();
            assert_eq!(c.base.as_str(), "http://h:1/v1/", "{raw}");
        }
        let c = Client::new("https://h/pay/", "k").unwrap();
        assert_eq!(
            c.base.join("sessions").unwrap().as_str(),
            "https://h/pay/v1/sessions"
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        assert!(matches!(Client::new("ftp://h", "k"), Err(Error::Config(_))));
        assert!(matches!(
            Client::new("not a url", "k"),
            Err(Error::Config(_))
        ));
        assert!(matches!(Client::new("http://h", ""), Err(Error::Config(_))));
    }

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(segment("sess_abc"), "sess_abc");
        assert_eq!(segment("../x y"), "..%2Fx%20y");
    }

    #[test]
    fn only_transient_failures_are_retried() {
        let api = |status| Error::Api {
            status,
            kind: ErrorType::Unknown,
            message: String::new(),
            retry_after: None,
        };
        assert!(retryable(&api(503)));
        assert!(!retryable(&api(400)));
        assert!(!retryable(&api(409)));
        assert!(!retryable(&api(429)));
    }
}
