//! A real service for tests: the full application on a random loopback port, over a
//! fresh database, with a clock the test can move. Enabled by the `test-support`
//! feature; used by the integration tests of the service, the client and the SDKs.
//!
//! The database is a new SQLite file, or, when `WALLEOT_TEST_POSTGRES` names a
//! PostgreSQL database (`postgres://USER@HOST:PORT/DB`), a new schema of it: each test
//! has its own, so tests run in parallel against either store.

use crate::domain::wallets::{WalletPolicy, Wallets};
use crate::domain::{Livemode, ManualClock};
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
    /// The database the server runs on (see [`test_database_url`]).
    pub database_url: String,
    /// Its SQLite file; none on PostgreSQL.
    pub database_path: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

/// The variable naming the PostgreSQL database of a run against PostgreSQL.
pub const POSTGRES_VARIABLE: &str = "WALLEOT_TEST_POSTGRES";

/// The PostgreSQL database the tests run against, if this run uses one.
pub fn test_postgres() -> Option<String> {
    std::env::var(POSTGRES_VARIABLE)
        .ok()
        .filter(|url| !url.is_empty())
}

/// A database of its own for one test: `walleot.db` in `dir`, or, on a run against
/// PostgreSQL, a new schema there (the URL sets its `search_path`). Schemas of runs
/// more than a day old are dropped on the way.
pub fn test_database_url(dir: &std::path::Path) -> String {
    match test_postgres() {
        None => format!("sqlite://{}", dir.join("walleot.db").display()),
        Some(base) => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_millis() as i64;
            let schema = format!(
                "t_{now}_{}",
                crate::domain::ids::random_base62(10).to_lowercase()
            );
            // On a thread of its own, so that it works inside and outside a runtime.
            let (admin, made) = (base.clone(), schema.clone());
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime");
                runtime.block_on(create_schema(&admin, &made, now - 86_400_000))
            })
            .join()
            .expect("the schema thread")
            .unwrap_or_else(|e| panic!("creating a schema in {base}: {e}"));
            let separator = if base.contains('?') { '&' } else { '?' };
            format!("{base}{separator}options=-c%20search_path%3D{schema}")
        }
    }
}

/// Runs one statement on a database from outside the service, as an operator's SQL
/// client would; answers the rows changed or the database's error.
pub async fn execute_sql(database_url: &str, sql: &str) -> Result<u64, String> {
    let done = if database_url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(database_url)
            .await
            .map_err(|e| e.to_string())?;
        let done = sqlx::query(sql).execute(&pool).await;
        pool.close().await;
        done.map(|d| d.rows_affected())
    } else {
        let pool = sqlx::PgPool::connect(database_url)
            .await
            .map_err(|e| e.to_string())?;
        let done = sqlx::query(sql).execute(&pool).await;
        pool.close().await;
        done.map(|d| d.rows_affected())
    };
    done.map_err(|e| e.to_string())
}

/// A transaction kept open on a PostgreSQL database from outside the service, holding
/// the row locks its statement took, as an instance stalled in the middle of a write
/// would; ended when dropped.
pub struct OpenTransaction(sqlx::PgConnection);

impl OpenTransaction {
    /// Begins a transaction and runs `sql` in it (say, `SELECT … FOR UPDATE`).
    pub async fn begin(database_url: &str, sql: &str) -> Result<Self, String> {
        use sqlx::Connection;
        let mut db = sqlx::PgConnection::connect(database_url)
            .await
            .map_err(|e| e.to_string())?;
        for statement in ["BEGIN", sql] {
            sqlx::query(statement)
                .execute(&mut db)
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok(OpenTransaction(db))
    }

    /// Ends the transaction, releasing its locks.
    pub async fn rollback(mut self) {
        let _ = sqlx::query("ROLLBACK").execute(&mut self.0).await;
    }
}

async fn create_schema(base: &str, schema: &str, older_than_ms: i64) -> Result<(), sqlx::Error> {
    use sqlx::Connection;
    let mut db = sqlx::PgConnection::connect(base).await?;
    sqlx::query(&format!("CREATE SCHEMA {schema}"))
        .execute(&mut db)
        .await?;
    let old: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::TEXT FROM pg_namespace WHERE nspname ~ '^t_[0-9]+_[a-z0-9]+$' \
         AND split_part(nspname, '_', 2)::BIGINT < $1",
    )
    .bind(older_than_ms)
    .fetch_all(&mut db)
    .await?;
    for old in old {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {old} CASCADE"))
            .execute(&mut db)
            .await?;
    }
    db.close().await
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
            database_url: test_database_url(dir.path()),
            sweep_every: Duration::from_secs(3600),
            ..Config::default()
        };
        configure(&mut config);
        let database_url = config.database_url.clone();
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
            .create(&merchant.id, Livemode::Test, 0)
            .await
            .expect("key")
            .1;
        let live_key = services
            .keys
            .create(&merchant.id, Livemode::Live, 0)
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
            database_url,
            database_path,
            _dir: dir,
        }
    }

    /// Runs one statement on the server's database from outside the service (see
    /// [`execute_sql`]).
    pub async fn execute_sql(&self, sql: &str) -> Result<u64, String> {
        execute_sql(&self.database_url, sql).await
    }

    /// Everything the database keeps, as bytes: the SQLite files, or every row of
    /// every table of the PostgreSQL schema as text.
    pub async fn database_contents(&self) -> Vec<u8> {
        let mut stored = Vec::new();
        if self.database_url.starts_with("sqlite:") {
            for suffix in ["", "-wal", "-shm"] {
                let path = format!("{}{suffix}", self.database_path.display());
                stored.extend(std::fs::read(&path).unwrap_or_default());
            }
            return stored;
        }
        let pool = sqlx::PgPool::connect(&self.database_url)
            .await
            .expect("the database");
        let tables: Vec<String> = sqlx::query_scalar(
            "SELECT tablename::TEXT FROM pg_tables WHERE schemaname = current_schema()",
        )
        .fetch_all(&pool)
        .await
        .expect("the tables");
        for table in tables {
            let rows: Vec<String> = sqlx::query_scalar(&format!("SELECT t::TEXT FROM {table} t"))
                .fetch_all(&pool)
                .await
                .expect("the rows");
            for row in rows {
                stored.extend(row.into_bytes());
            }
        }
        pool.close().await;
        stored
    }

    /// The wallet service over this server's store and clock.
    pub fn wallets(&self) -> Wallets {
        Wallets::new(
            self.services.store.clone(),
            self.clock.clone(),
            WalletPolicy::default(),
        )
    }

    /// The mandate service over this server's store and clock.
    pub fn mandates(&self) -> crate::domain::mandates::Mandates {
        crate::domain::mandates::Mandates::new(self.services.store.clone(), self.clock.clone())
    }

    /// The session as stored.
    pub async fn session(&self, id: &str) -> crate::domain::sessions::SessionRecord {
        self.services
            .store
            .find_session(id)
            .await
            .expect("the store answers")
            .expect("the session exists")
    }

    /// How many ledger transfers name this session: a paid session has exactly one.
    pub async fn transfers_of(&self, session_id: &str) -> usize {
        let (_, transfers) = self
            .services
            .store
            .ledger_snapshot()
            .await
            .expect("the ledger");
        transfers
            .iter()
            .filter(|t| t.session_id.as_deref() == Some(session_id))
            .count()
    }

    /// A key of a new merchant, to test isolation between merchants.
    pub async fn other_merchant_key(&self, name: &str, mode: Livemode) -> String {
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

/// An authenticator in software: it answers WebAuthn ceremonies with the very bytes a
/// browser and a platform authenticator would send, for tests without a browser.
pub mod webauthn {
    use crate::domain::factors::webauthn::{decode, encode};
    use ciborium::value::Value as Cbor;
    use p256::ecdsa::signature::Signer;
    use p256::ecdsa::{Signature, SigningKey};
    use serde_json::{json, Value};
    use sha2::{Digest, Sha256};

    /// COSE algorithm numbers.
    pub const ES256: i64 = -7;
    pub const EDDSA: i64 = -8;
    pub const RS256: i64 = -257;

    pub fn client_data(kind: &str, challenge: &[u8], origin: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"type": kind, "challenge": encode(challenge), "origin": origin, "crossOrigin": false}))
            .unwrap()
    }

    /// The COSE_Key of a P-256 key, as an authenticator puts it in attested data.
    pub fn es256_cose(key: &SigningKey) -> Cbor {
        let point = key.verifying_key().to_encoded_point(false);
        Cbor::Map(vec![
            (Cbor::Integer(1.into()), Cbor::Integer(2.into())),
            (Cbor::Integer(3.into()), Cbor::Integer(ES256.into())),
            (Cbor::Integer((-1).into()), Cbor::Integer(1.into())),
            (
                Cbor::Integer((-2).into()),
                Cbor::Bytes(point.x().unwrap().to_vec()),
            ),
            (
                Cbor::Integer((-3).into()),
                Cbor::Bytes(point.y().unwrap().to_vec()),
            ),
        ])
    }

    /// Authenticator data; with `attested`, the credential id and public key follow.
    pub fn auth_data(
        rp_id: &str,
        flags: u8,
        count: u32,
        attested: Option<(&[u8], &SigningKey)>,
    ) -> Vec<u8> {
        attested_auth_data(
            rp_id,
            flags,
            count,
            attested.map(|(id, key)| (id, es256_cose(key))),
        )
    }

    /// Authenticator data with any COSE_Key in the attested credential data.
    pub fn attested_auth_data(
        rp_id: &str,
        flags: u8,
        count: u32,
        attested: Option<(&[u8], Cbor)>,
    ) -> Vec<u8> {
        let mut data = Sha256::digest(rp_id.as_bytes()).to_vec();
        data.push(flags);
        data.extend_from_slice(&count.to_be_bytes());
        if let Some((id, cose)) = attested {
            data.extend_from_slice(&[0u8; 16]);
            data.extend_from_slice(&(id.len() as u16).to_be_bytes());
            data.extend_from_slice(id);
            ciborium::into_writer(&cose, &mut data).unwrap();
        }
        data
    }

    /// An attestation object of format "none".
    pub fn attestation(auth: Vec<u8>) -> Vec<u8> {
        let object = Cbor::Map(vec![
            (Cbor::Text("fmt".into()), Cbor::Text("none".into())),
            (Cbor::Text("attStmt".into()), Cbor::Map(vec![])),
            (Cbor::Text("authData".into()), Cbor::Bytes(auth)),
        ]);
        let mut out = Vec::new();
        ciborium::into_writer(&object, &mut out).unwrap();
        out
    }

    pub fn sign(key: &SigningKey, auth: &[u8], client: &[u8]) -> Vec<u8> {
        SoftKey::Es256(key.clone()).sign(auth, client)
    }

    /// The key pair of a software passkey.
    #[derive(Clone)]
    pub enum SoftKey {
        /// ECDSA on P-256 with SHA-256, what most platform authenticators make.
        Es256(SigningKey),
        /// RSASSA-PKCS1-v1_5 with SHA-256 on a 2048-bit key, what Windows Hello makes.
        Rs256(Box<rsa::RsaPrivateKey>),
        /// Ed25519, as some security keys make.
        Ed25519(ed25519_dalek::SigningKey),
    }

    impl SoftKey {
        pub fn es256() -> Self {
            SoftKey::Es256(SigningKey::random(&mut rand::rngs::OsRng))
        }

        pub fn rs256() -> Self {
            let key = rsa::RsaPrivateKey::new(&mut rand::rngs::OsRng, 2048).expect("an RSA key");
            SoftKey::Rs256(Box::new(key))
        }

        pub fn ed25519() -> Self {
            let seed: [u8; 32] = crate::domain::factors::webauthn::random_bytes(32)
                .try_into()
                .unwrap();
            SoftKey::Ed25519(ed25519_dalek::SigningKey::from_bytes(&seed))
        }

        /// Its COSE algorithm number.
        pub fn algorithm(&self) -> i64 {
            match self {
                SoftKey::Es256(_) => ES256,
                SoftKey::Rs256(_) => RS256,
                SoftKey::Ed25519(_) => EDDSA,
            }
        }

        /// The public key as a COSE_Key.
        pub fn cose(&self) -> Cbor {
            use rsa::traits::PublicKeyParts;
            match self {
                SoftKey::Es256(key) => es256_cose(key),
                SoftKey::Rs256(key) => Cbor::Map(vec![
                    (Cbor::Integer(1.into()), Cbor::Integer(3.into())),
                    (Cbor::Integer(3.into()), Cbor::Integer(RS256.into())),
                    (
                        Cbor::Integer((-1).into()),
                        Cbor::Bytes(key.n().to_bytes_be()),
                    ),
                    (
                        Cbor::Integer((-2).into()),
                        Cbor::Bytes(key.e().to_bytes_be()),
                    ),
                ]),
                SoftKey::Ed25519(key) => Cbor::Map(vec![
                    (Cbor::Integer(1.into()), Cbor::Integer(1.into())),
                    (Cbor::Integer(3.into()), Cbor::Integer(EDDSA.into())),
                    (Cbor::Integer((-1).into()), Cbor::Integer(6.into())),
                    (
                        Cbor::Integer((-2).into()),
                        Cbor::Bytes(key.verifying_key().to_bytes().to_vec()),
                    ),
                ]),
            }
        }

        /// The assertion signature over the authenticator data and the client data hash.
        pub fn sign(&self, auth: &[u8], client: &[u8]) -> Vec<u8> {
            let mut signed = auth.to_vec();
            signed.extend_from_slice(&Sha256::digest(client));
            match self {
                SoftKey::Es256(key) => {
                    let signature: Signature = key.sign(&signed);
                    signature.to_der().as_bytes().to_vec()
                }
                SoftKey::Rs256(key) => {
                    use rsa::signature::SignatureEncoding;
                    let signer = rsa::pkcs1v15::SigningKey::<Sha256>::new((**key).clone());
                    signer.sign(&signed).to_vec()
                }
                SoftKey::Ed25519(key) => {
                    use ed25519_dalek::Signer;
                    key.sign(&signed).to_bytes().to_vec()
                }
            }
        }
    }

    pub struct SoftAuthenticator {
        pub key: SoftKey,
        pub credential_id: Vec<u8>,
        origin: String,
        count: u32,
    }

    impl SoftAuthenticator {
        /// An ES256 authenticator for pages served at `origin` (`http://localhost:PORT`).
        pub fn new(origin: &str) -> Self {
            Self::with_key(origin, SoftKey::es256())
        }

        /// An RS256 authenticator, like Windows Hello.
        pub fn rs256(origin: &str) -> Self {
            Self::with_key(origin, SoftKey::rs256())
        }

        /// An Ed25519 authenticator, like some security keys.
        pub fn ed25519(origin: &str) -> Self {
            Self::with_key(origin, SoftKey::ed25519())
        }

        pub fn with_key(origin: &str, key: SoftKey) -> Self {
            SoftAuthenticator {
                key,
                credential_id: crate::domain::factors::webauthn::random_bytes(16),
                origin: origin.trim_end_matches('/').to_string(),
                count: 0,
            }
        }

        /// Answers `publicKey` creation options as `navigator.credentials.create` would.
        /// Like a real authenticator, it makes a key only of an algorithm it is offered.
        pub fn register(&mut self, options: &Value) -> Value {
            let offered = options["pubKeyCredParams"]
                .as_array()
                .map(|params| {
                    params
                        .iter()
                        .any(|p| p["alg"].as_i64() == Some(self.key.algorithm()))
                })
                .unwrap_or(false);
            assert!(
                offered,
                "algorithm {} is not offered: {options}",
                self.key.algorithm()
            );
            let challenge = decode(options["challenge"].as_str().unwrap()).unwrap();
            let rp_id = options["rp"]["id"].as_str().unwrap();
            let client = client_data("webauthn.create", &challenge, &self.origin);
            let auth =
                attested_auth_data(rp_id, 0x45, 0, Some((&self.credential_id, self.key.cose())));
            json!({
                "credentialId": encode(&self.credential_id),
                "clientDataJSON": encode(&client),
                "attestationObject": encode(&attestation(auth)),
            })
        }

        /// Answers `publicKey` request options as `navigator.credentials.get` would.
        pub fn assert(&mut self, options: &Value) -> Value {
            let challenge = decode(options["challenge"].as_str().unwrap()).unwrap();
            self.assert_challenge(options["rpId"].as_str().unwrap(), &challenge)
        }

        /// Signs any challenge, as a tampered client could.
        pub fn assert_challenge(&mut self, rp_id: &str, challenge: &[u8]) -> Value {
            self.count += 1;
            self.assert_with_count(rp_id, challenge, self.count)
        }

        /// Signs with a chosen signature counter, as a cloned authenticator would.
        pub fn assert_with_count(&mut self, rp_id: &str, challenge: &[u8], count: u32) -> Value {
            let client = client_data("webauthn.get", challenge, &self.origin);
            let auth = auth_data(rp_id, 0x05, count, None);
            json!({
                "credentialId": encode(&self.credential_id),
                "clientDataJSON": encode(&client),
                "authenticatorData": encode(&auth),
                "signature": encode(&self.key.sign(&auth, &client)),
            })
        }
    }
}

/// A payer in a browser without the browser: registers a passkey wallet through the real
/// checkout pages and pays sessions through them, approving with a passkey assertion
/// when a charge is above the auto-approve limit.
pub struct CheckoutPayer {
    http: reqwest::Client,
    origin: String,
    authenticator: webauthn::SoftAuthenticator,
}

impl CheckoutPayer {
    /// A new wallet on the pages served at `public_url` (`http://localhost:PORT`).
    pub async fn register(public_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client");
        let origin = public_url.trim_end_matches('/').to_string();
        let mut payer = CheckoutPayer {
            http,
            authenticator: webauthn::SoftAuthenticator::new(&origin),
            origin,
        };
        let (_, options) = payer
            .json("/webauthn/register/options", serde_json::json!({}))
            .await;
        let mut answer = payer.authenticator.register(&options["publicKey"]);
        answer["challengeId"] = options["challengeId"].clone();
        let (status, body) = payer.json("/webauthn/register/finish", answer).await;
        assert_eq!(status, 200, "registering a wallet: {body}");
        payer
    }

    /// A page as this payer sees it, opened as a browser opens a link the payer
    /// clicked (with the Fetch Metadata that lets a small charge pay itself).
    pub async fn page(&self, path_or_url: &str) -> String {
        let url = if path_or_url.starts_with("http") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.origin)
        };
        self.http
            .get(url)
            .header("sec-fetch-site", "cross-site")
            .header("sec-fetch-mode", "navigate")
            .header("sec-fetch-dest", "document")
            .header("sec-fetch-user", "?1")
            .send()
            .await
            .expect("the page answers")
            .text()
            .await
            .unwrap_or_default()
    }

    async fn json(&self, path: &str, body: serde_json::Value) -> (u16, serde_json::Value) {
        let html = self.page("/wallet").await;
        let csrf = html
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default()
            .to_string();
        let response = self
            .http
            .post(format!("{}{path}", self.origin))
            .header("origin", &self.origin)
            .header("x-csrf-token", csrf)
            .json(&body)
            .send()
            .await
            .expect("the service answers");
        let status = response.status().as_u16();
        (
            status,
            response.json().await.unwrap_or(serde_json::Value::Null),
        )
    }

    /// Opens the checkout link and pays: at once under the auto-approve limit, else with
    /// one passkey assertion. Returns the state the page then shows (`paid`, …).
    pub async fn pay(&mut self, checkout_url: &str) -> String {
        let state = |html: &str| {
            html.split("data-state=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap_or_default()
                .to_string()
        };
        let shown = state(&self.page(checkout_url).await);
        if shown != "approve" {
            return shown;
        }
        let session_id = checkout_url
            .rsplit('/')
            .next()
            .unwrap_or_default()
            .to_string();
        let (_, options) = self
            .json(
                "/webauthn/approve/options",
                serde_json::json!({"sessionId": session_id}),
            )
            .await;
        let mut answer = self.authenticator.assert(&options["publicKey"]);
        answer["challengeId"] = options["challengeId"].clone();
        self.json("/webauthn/approve/finish", answer).await;
        state(&self.page(checkout_url).await)
    }
}
