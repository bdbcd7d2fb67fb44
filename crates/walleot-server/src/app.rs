//! The application: the state every handler shares, and the router that mounts the
//! `/v1` API (`crate::http`), the health check and the payer's pages (`crate::pages`)
//! under the layers they all share (body limits, panic safety, tracing, HSTS).

use crate::domain::approvals::Approvals;
use crate::domain::factors::Factors;
use crate::domain::keys::Keys;
use crate::domain::ports::Store;
use crate::domain::sessions::Sessions;
use crate::domain::wallets::Wallets;
use crate::domain::Clock;
use crate::http::error::ApiError;
use crate::http::idempotency::IdempotencyPolicy;
use crate::http::{self};
use crate::ratelimit::RateLimiter;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue};
use axum::middleware::{from_fn, map_response, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::sync::Arc;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

/// Everything a handler may use. Extractors and layers clone it for every request, so
/// a clone is one reference count.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> Self {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] shares.
pub struct Shared {
    pub keys: Keys,
    pub sessions: Sessions,
    pub receipts: crate::domain::receipts::Receipts,
    pub webhooks: crate::domain::webhooks::Webhooks,
    pub mandates: crate::domain::mandates::Mandates,
    pub approvals: Approvals,
    pub factors: Factors,
    pub wallets: Wallets,
    pub topups: crate::domain::topups::TopUps,
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limiter: Arc<RateLimiter>,
    pub idempotency: IdempotencyPolicy,
    /// Idempotency keys of the requests running now.
    pub idempotent_in_flight: crate::http::idempotency::InFlight,
    /// Base of the links handed to payers, without a trailing slash.
    pub public_url: Arc<str>,
    pub pages: Arc<crate::pages::PageContext>,
    /// Turns true when the service begins to shut down.
    pub closing: tokio::sync::watch::Receiver<bool>,
}

impl Shared {
    pub fn checkout_url(&self, session_id: &str) -> String {
        format!("{}/checkout/{session_id}", self.public_url)
    }
}

/// `Strict-Transport-Security` of every answer of a service reached over HTTPS: two years.
const HSTS: &str = "max-age=63072000";

/// Whether payers reach the service over HTTPS: then answers carry HSTS and cookies are
/// `Secure`. One rule for both, scheme in any case.
pub fn is_https(public_url: &str) -> bool {
    public_url
        .get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

pub fn router(state: AppState) -> Router {
    let https = is_https(&state.public_url);
    let v1 = http::v1(&state);
    let app = Router::new()
        .nest("/v1", v1)
        .route("/healthz", get(http::health))
        .route("/.well-known/jwks.json", get(http::receipts::jwks))
        .merge(crate::pages::routes())
        .fallback(http::not_found)
        .layer(from_fn(|req: Request, next: Next| async move {
            // `/v1` refuses inside its gate, so that the answer has rate-limit headers.
            if req.uri().path().starts_with("/v1/") {
                next.run(req).await
            } else {
                http::refuse_declared_oversize(req, next).await
            }
        }))
        .layer(DefaultBodyLimit::max(http::idempotency::MAX_BODY))
        .layer(CatchPanicLayer::custom(|_| {
            ApiError::internal().into_response()
        }))
        .layer(TraceLayer::new_for_http())
        .with_state(state);
    if https {
        app.layer(map_response(|mut response: Response| async move {
            response.headers_mut().insert(
                header::STRICT_TRANSPORT_SECURITY,
                HeaderValue::from_static(HSTS),
            );
            response
        }))
    } else {
        app
    }
}
