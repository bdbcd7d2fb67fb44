//! The official Python package `walleot` (with its dependency `paymcp`) talks to this
//! service unchanged but for its base URL. The test installs the package into a
//! virtual environment of its own, under the target directory, once.

use std::path::{Path, PathBuf};
use std::process::Command;
use walleot_server::testing::TestServer;

const PACKAGES: &[&str] = &["walleot==0.4.3", "paymcp==0.9.1"];

/// Creates the provider exactly as the package does, pointed at our service.
const SCRIPT: &str = r#"
import json, sys
import paymcp.providers.walleot as walleot_provider
from walleot import Walleot  # the package's public entry point imports cleanly

walleot_provider.BASE_URL = sys.argv[1]
provider = walleot_provider.WalleotProvider(api_key=sys.argv[2])
if sys.argv[3] == "create":
    session_id, url = provider.create_payment(amount=2.0, currency="USD", description="Premium feature unlock")
    print(json.dumps({"id": session_id, "url": url, "status": provider.get_payment_status(session_id)}))
else:
    print(json.dumps({"status": provider.get_payment_status(sys.argv[4])}))
"#;

fn venv() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    walleot_server::venv::python_tools(tmp, "python-walleot-venv", PACKAGES).join("python")
}

fn run(python: &Path, args: &[&str]) -> serde_json::Value {
    let out = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("the script prints JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_python_provider_creates_and_checks_payments() {
    let python = tokio::task::spawn_blocking(venv).await.unwrap();
    let server = TestServer::start().await;
    let base = format!("{}/v1", server.base_url);
    let key = server.test_key.clone();

    let created = {
        let (python, base, key) = (python.clone(), base.clone(), key.clone());
        tokio::task::spawn_blocking(move || run(&python, &[&base, &key, "create"]))
            .await
            .unwrap()
    };
    let id = created["id"].as_str().unwrap().to_string();
    assert!(id.starts_with("sess_"));
    assert_eq!(
        created["url"],
        format!("{}/checkout/{id}", server.public_url)
    );
    assert_eq!(created["status"], "pending");

    let stored = server
        .services
        .store
        .get_session(&server.merchant_id, false, &id)
        .await
        .unwrap()
        .expect("the session is stored");
    assert_eq!((stored.amount, stored.currency.code()), (200, "usd"));
    assert_eq!(
        stored.description.as_deref(),
        Some("Premium feature unlock")
    );

    let paid = reqwest::Client::new()
        .post(format!("{base}/test_helpers/sessions/{id}/pay"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(paid.status(), 200);
    let status = tokio::task::spawn_blocking(move || run(&python, &[&base, &key, "status", &id]))
        .await
        .unwrap();
    assert_eq!(status["status"], "paid");
}
