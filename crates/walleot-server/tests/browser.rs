//! The payer's journeys in headless Chromium (`browser-tests/journeys.test.mjs`) against
//! the real `walleot serve`, then checks of what they left in the ledger. Screenshots of
//! the main pages land in `target/screenshots/`.
//!
//! Needs Node.js and Debian's `chromium` (`scripts/test` installs it when missing).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn walleot(database_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_walleot"))
        .args(args)
        .args(["--database-url", database_url])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "walleot {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn ensure_node_modules(dir: &Path) {
    if dir.join("node_modules/playwright-core").exists() {
        return;
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .status()
        .expect("npm runs");
    assert!(status.success(), "npm ci in {}", dir.display());
}

#[test]
fn payer_journeys_in_a_real_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    assert!(
        Path::new(&chromium).exists(),
        "Chromium is needed at {chromium}: `apt-get install chromium`, or run scripts/test"
    );
    let tests_dir = workspace().join("browser-tests");
    ensure_node_modules(&tests_dir);

    let dir = tempfile::tempdir().unwrap();
    let database_url = format!("sqlite://{}", dir.path().join("browser.db").display());
    let key = walleot(&database_url, &["keys", "create", "--mode", "test"])
        .trim()
        .to_string();
    let voucher = walleot(
        &database_url,
        &[
            "vouchers",
            "create",
            "--amount",
            "500",
            "--currency",
            "usd",
            "--mode",
            "test",
        ],
    )
    .trim()
    .to_string();

    let mut server = Command::new(env!("CARGO_BIN_EXE_walleot"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            &database_url,
            // Every journey makes a wallet from the same address: room beyond the ten
            // an hour that people get.
            "--rate-limit-wallets",
            "50",
        ])
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut banner = BufReader::new(server.stdout.take().unwrap()).lines();
    let first = banner.next().unwrap().unwrap();
    let bound = first
        .strip_prefix("walleot listening on http://127.0.0.1:")
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("unexpected banner {first}"))
        .to_string();
    // Passkeys need a host name: the pages are served as localhost.
    let base = format!("http://localhost:{bound}");
    std::thread::spawn(move || for _ in banner {});

    let shots = workspace().join("target/screenshots");
    let run = Command::new("node")
        .args([
            "--test",
            "--test-reporter=spec",
            "--test-concurrency=1",
            "journeys.test.mjs",
        ])
        .current_dir(&tests_dir)
        .env("BASE_URL", &base)
        .env("WALLEOT_KEY", &key)
        .env("VOUCHER_CODE", &voucher)
        .env("SCREENSHOT_DIR", &shots)
        .env("CHROMIUM", &chromium)
        .output()
        .unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    let _ = server.kill();
    let _ = server.wait();
    assert!(run.status.success(), "browser journeys failed:\n{report}");
    println!("{report}");
    for shot in [
        "checkout-new-payer.png",
        "checkout-paid.png",
        "checkout-approve-mobile.png",
        "checkout-confirm.png",
        "wallet.png",
        "checkout-grant.png",
        "wallet-mandates.png",
    ] {
        assert!(shots.join(shot).exists(), "{shot} was not saved");
    }

    std::thread::sleep(Duration::from_millis(100));
    let verified = walleot(&database_url, &["ledger", "verify"]);
    assert!(verified.contains("consistent"), "{verified}");
    check_passkey_evidence(&database_url);
    check_passkey_algorithms(&database_url);
}

/// The journeys made passkeys of ES256, RS256 (the Windows Hello journey) and EdDSA, and
/// the service stored each with its algorithm.
fn check_passkey_algorithms(database_url: &str) {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let keys: Vec<(Vec<u8>,)> = sqlx::query_as("SELECT public_key FROM passkeys")
            .fetch_all(&pool)
            .await
            .unwrap();
        let algorithms: Vec<String> = keys
            .iter()
            .map(|(key,)| {
                let credential: serde_json::Value = serde_json::from_slice(key).unwrap();
                credential["cred"]["type_"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string()
            })
            .collect();
        for algorithm in ["ES256", "RS256", "EDDSA"] {
            assert!(
                algorithms.iter().any(|a| a == algorithm),
                "no {algorithm} passkey among {algorithms:?}"
            );
        }
    });
}

/// Each passkey approval's stored assertion names, through its challenge, the very
/// charge it approved.
fn check_passkey_evidence(database_url: &str) {
    use base64::Engine;
    use walleot_server::domain::factors::webauthn::{approval_challenge, decode};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let pool = sqlx::SqlitePool::connect(database_url).await.unwrap();
        let rows: Vec<(String, i64, String, String, String)> = sqlx::query_as(
            "SELECT s.id, s.amount, s.currency, s.merchant_id, a.evidence FROM approvals a \
             JOIN sessions s ON s.id = a.session_id WHERE a.method = 'passkey'",
        )
        .fetch_all(&pool)
        .await
        .unwrap();
        assert!(
            rows.len() >= 2,
            "the passkey approvals are recorded: {}",
            rows.len()
        );
        for (id, amount, currency, merchant, evidence) in rows {
            let evidence: serde_json::Value = serde_json::from_str(&evidence).unwrap();
            let client_data = decode(evidence["clientDataJSON"].as_str().unwrap()).unwrap();
            let client_data: serde_json::Value = serde_json::from_slice(&client_data).unwrap();
            let nonce = decode(evidence["nonce"].as_str().unwrap()).unwrap();
            let expected = approval_challenge(&id, amount, &currency, &merchant, &nonce);
            let expected = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(expected);
            assert_eq!(client_data["challenge"], expected.as_str(), "{id}");
            assert_eq!(client_data["type"], "webauthn.get");
        }
    });
}
