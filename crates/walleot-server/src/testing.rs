//! A real service for tests: the full application on a random loopback port, over a
//! fresh SQLite file, with a clock the test can move. Enabled by the `test-support`
//! feature; used by the integration tests of the service, the client and the SDKs.

use crate::domain::wallets::{WalletPolicy, Wallets};
use crate::domain::{ManualClock, Mode};
use crate::startup::{Application, Config, Services};
use std::sync::Arc;
use std::time::Duration;

pub struct TestServer {
    /// `http://127.0.0.1:PORT`, without `/v1`.
    pub base_url: String,
    /// The base of checkout links: `http://localhost:PORT`.
    pub public_url: String,
    pub services: Services,
    pub clock: Arc<ManualClock>,
    /// A test key and a live key of the demo merchant.
    pub test_key: String,
    pub live_key: String,
    pub merchant_id: String,
    pub database_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl TestServer {
    /// Starts with the default configuration, except that the sweeper waits an hour (so
    /// that tests see expiry as the API computes it).
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(configure: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temporary directory");
        let database_path = dir.path().join("walleot.db");
        let mut config = Config {
            listen: "127.0.0.1:0".into(),
            database_url: format!("sqlite://{}", database_path.display()),
            sweep_every: Duration::from_secs(3600),
            ..Config::default()
        };
        configure(&mut config);
        let services = Services::open(&config.database_url, config.key_secret.as_deref())
            .await
            .expect("open the database");
        let clock = Arc::new(ManualClock::new());
        let merchant = services
            .merchants
            .default_merchant(0)
            .await
            .expect("demo merchant");
        let test_key = services
            .keys
            .create(&merchant.id, Mode::Test, 0)
            .await
            .expect("key")
            .1;
        let live_key = services
            .keys
            .create(&merchant.id, Mode::Live, 0)
            .await
            .expect("key")
            .1;
        let app = Application::build(config, services.clone(), clock.clone())
            .await
            .expect("build the application");
        let base_url = format!("http://{}", app.local_addr());
        let public_url = app.state().public_url.to_string();
        tokio::spawn(app.run_until(std::future::pending()));
        TestServer {
            base_url,
            public_url,
            services,
            clock,
            test_key: test_key.expose_secret().to_string(),
            live_key: live_key.expose_secret().to_string(),
            merchant_id: merchant.id,
            database_path,
            _dir: dir,
        }
    }

    /// The wallet service over this server's store and clock.
    pub fn wallets(&self) -> Wallets {
        Wallets::new(
            self.services.store.clone(),
            self.clock.clone(),
            WalletPolicy::default(),
        )
    }

    /// A key of a new merchant, to test isolation between merchants.
    pub async fn other_merchant_key(&self, name: &str, mode: Mode) -> String {
        let merchant = self
            .services
            .merchants
            .create(name, 0)
            .await
            .expect("merchant");
        let (_, key) = self
            .services
            .keys
            .create(&merchant.id, mode, 0)
            .await
            .expect("key");
        key.expose_secret().to_string()
    }
}
