//! Builds the service from its configuration, bound to its port, with its background
//! work (the expiry sweeper and the webhook worker). The binary and the tests both start it through here.

use crate::app::{router, AppState, Shared};
use crate::domain::approvals::Approvals;
use crate::domain::factors::Factors;
use crate::domain::keys::Keys;
use crate::domain::mandates::Mandates;
use crate::domain::merchants::Merchants;
use crate::domain::ports::Store;
use crate::domain::receipts::Receipts;
use crate::domain::sessions::{SessionPolicy, Sessions};
use crate::domain::topups::TopUps;
use crate::domain::wallets::{WalletPolicy, Wallets};
use crate::domain::webhooks::{WebhookPolicy, Webhooks};
use crate::domain::{ApiKey, Clock, KeyHasher, Livemode};
use crate::http::idempotency::IdempotencyPolicy;
use crate::http::server::ConnectionLimits;
use crate::pages::{PageContext, PageLimits};
use crate::ratelimit::{Limits, RateLimiter};
use crate::store;
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, Clone)]
pub struct Config {
    pub listen: String,
    pub database_url: String,
    /// Base of checkout links; derived from the bound address when absent.
    pub public_url: Option<String>,
    pub limits: Limits,
    /// Per-address hourly limits of the payer's pages.
    pub page_limits: PageLimits,
    pub sessions: SessionPolicy,
    pub wallets: WalletPolicy,
    pub idempotency: IdempotencyPolicy,
    /// How often overdue sessions are marked expired.
    pub sweep_every: Duration,
    /// Secret for hashing API keys; kept in the database when absent.
    pub key_secret: Option<String>,
    /// Read deadlines and the bound on open connections.
    pub connections: ConnectionLimits,
    /// The Redis that instances share rate limits in; counted per instance without one.
    pub redis_url: Option<String>,
    /// Webhook delivery: timeouts, retries and which addresses live endpoints may have.
    pub webhooks: WebhookPolicy,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: DEFAULT_LISTEN.into(),
            database_url: default_database_url(),
            public_url: None,
            limits: Limits::default(),
            page_limits: PageLimits::default(),
            sessions: SessionPolicy::default(),
            wallets: WalletPolicy::default(),
            idempotency: IdempotencyPolicy::default(),
            sweep_every: Duration::from_secs(5),
            key_secret: None,
            connections: ConnectionLimits::default(),
            redis_url: None,
            webhooks: WebhookPolicy::default(),
        }
    }
}

/// Where `walleot serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";

pub fn default_database_url() -> String {
    "sqlite://walleot.db".into()
}

/// `http://localhost:PORT` for a loopback address (passkeys need a host name, not an
/// IP address), else `http://ADDRESS`.
pub fn default_public_url(addr: SocketAddr) -> String {
    if addr.ip().is_loopback() {
        format!("http://localhost:{}", addr.port())
    } else {
        format!("http://{addr}")
    }
}

/// The domain services over one store.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn Store>,
    pub keys: Keys,
    pub merchants: Merchants,
}

impl Services {
    pub async fn open(database_url: &str, key_secret: Option<&str>) -> anyhow::Result<Self> {
        let store = store::open(database_url)
            .await
            .with_context(|| format!("opening the database {database_url}"))?;
        let secret = match key_secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let fresh = crate::domain::ids::random_base62(43).into_bytes();
                store.secret("api_key_hash_secret", fresh).await?
            }
        };
        Ok(Services {
            keys: Keys::new(store.clone(), KeyHasher::new(secret)),
            merchants: Merchants::new(store.clone()),
            store,
        })
    }

    /// On an empty database: creates the demo merchant and a test key, returned in
    /// clear so that it can be shown once.
    pub async fn bootstrap(&self, now_ms: i64) -> anyhow::Result<Option<ApiKey>> {
        if !self.merchants.list().await?.is_empty() {
            return Ok(None);
        }
        let merchant = self.merchants.default_merchant(now_ms).await?;
        let (_, key) = self
            .keys
            .create(&merchant.id, Livemode::Test, now_ms)
            .await?;
        Ok(Some(key))
    }
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
    /// Set when shutdown begins, so that long polls answer at once.
    closing: tokio::sync::watch::Sender<bool>,
    sweep_every: Duration,
    connections: ConnectionLimits,
}

impl Application {
    pub async fn build(
        config: Config,
        services: Services,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Self> {
        let listener = TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let public_url = config
            .public_url
            .clone()
            .unwrap_or_else(|| default_public_url(addr))
            .trim_end_matches('/')
            .to_string();
        let page_secret = services
            .store
            .secret(
                "page_secret",
                crate::domain::ids::random_base62(43).into_bytes(),
            )
            .await?;
        let wallets = Wallets::new(
            services.store.clone(),
            clock.clone(),
            config.wallets.clone(),
        );
        let limiter = match &config.redis_url {
            Some(url) => RateLimiter::shared(config.limits, url)
                .await
                .map_err(|e| anyhow::anyhow!("connecting to Redis at --redis-url: {e}"))?,
            None => {
                tracing::warn!(
                    "rate limits are counted by this instance alone; with several instances, give them --redis-url to share them"
                );
                RateLimiter::new(config.limits)
            }
        };
        let (closing, _) = tokio::sync::watch::channel(false);
        let mandates = Mandates::new(services.store.clone(), clock.clone());
        let sessions = Sessions::new(
            services.store.clone(),
            clock.clone(),
            config.sessions.clone(),
            wallets.clone(),
            mandates.clone(),
        );
        let state = AppState::new(Shared {
            approvals: Approvals::new(
                services.store.clone(),
                clock.clone(),
                sessions.clone(),
                wallets.clone(),
                mandates.clone(),
            ),
            factors: Factors::new(services.store.clone(), clock.clone()),
            sessions,
            mandates,
            webhooks: Webhooks::new(
                services.store.clone(),
                clock.clone(),
                config.webhooks.clone(),
            ),
            receipts: Receipts::new(services.store.clone(), clock.clone(), &public_url),
            topups: TopUps::standard(&wallets),
            wallets,
            keys: services.keys,
            store: services.store,
            clock,
            limiter: Arc::new(limiter),
            idempotency: config.idempotency,
            idempotent_in_flight: Default::default(),
            pages: Arc::new(PageContext::new(
                &public_url,
                page_secret,
                config.page_limits,
            )),
            public_url: public_url.into(),
            closing: closing.subscribe(),
        });
        Ok(Application {
            listener,
            state,
            closing,
            sweep_every: config.sweep_every,
            connections: config.connections,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves until `shutdown` completes, then finishes the requests in flight.
    pub async fn run_until(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> anyhow::Result<()> {
        let sweeper = tokio::spawn(sweep(self.state.clone(), self.sweep_every));
        let deliverer = tokio::spawn(
            crate::delivery::Deliverer::new(
                self.state.store.clone(),
                self.state.clock.clone(),
                self.state.webhooks.policy().clone(),
            )
            .run(),
        );
        let app = router(self.state);
        let closing = self.closing;
        let shutdown = async move {
            shutdown.await;
            let _ = closing.send(true);
        };
        let served =
            crate::http::server::serve(self.listener, app, self.connections, shutdown).await;
        // Each sweep is one transaction: stopping between two loses nothing.
        sweeper.abort();
        // A delivery cut short is leased, and made again once its lease is over.
        deliverer.abort();
        served.context("serving HTTP")
    }
}

/// Marks overdue sessions expired (recording their events), records mandates' expiries,
/// releases holds past their deadline, and forgets idempotency answers past their
/// retention.
async fn sweep(state: AppState, every: Duration) {
    const BATCH: i64 = 500;
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        loop {
            match state.sessions.expire_due(BATCH).await {
                Ok(n) if n as i64 == BATCH => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "expiry sweep failed");
                    break;
                }
            }
        }
        if let Err(e) = state.mandates.record_expiries(BATCH).await {
            tracing::warn!(error = %e, "recording mandate expiries failed");
        }
        let now = state.clock.now_ms();
        if let Err(e) = crate::domain::payments::lapse_due(&*state.store, now, BATCH).await {
            tracing::warn!(error = %e, "lapsing holds failed");
        }
        let cutoff = state.clock.now_ms() - state.idempotency.retain_ms;
        if let Err(e) = state.store.purge_idempotency_keys(cutoff).await {
            tracing::warn!(error = %e, "purging idempotency keys failed");
        }
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
