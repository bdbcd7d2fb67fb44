//! The official Python MCP client (PyPI `mcp` 2.x, which speaks MCP 2026-07-28 by
//! default) against the example server over streamable HTTP, in every mode: what an
//! agent built on it sees, pays and gets. The client runs `official_client.py` from a
//! virtual environment of its own under the target directory, installed once.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use walleot_server::testing::TestServer;

const PACKAGES: &[&str] = &["mcp==2.3.0"];

fn venv() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    walleot_server::venv::python_tools(tmp, "python-mcp-venv", PACKAGES).join("python")
}

/// The example server over streamable HTTP on a free port, and its `/mcp` address.
struct Example {
    child: tokio::process::Child,
    url: String,
}

impl Example {
    async fn start(service: &TestServer, mode: &str) -> Self {
        use tokio::io::{AsyncBufReadExt, BufReader};
        let example = std::env::current_exe()
            .unwrap()
            .parent()
            .unwrap()
            .parent()
            .unwrap()
            .join("examples/paid_server");
        let mut child = tokio::process::Command::new(example)
            .args(["--mode", mode, "--http", "127.0.0.1:0"])
            .env("WALLEOT_API_URL", &service.base_url)
            .env("WALLEOT_API_KEY", &service.test_key)
            .env("WALLEOT_STATE_DIR", env!("CARGO_TARGET_TMPDIR"))
            .env("RUST_LOG", "error")
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the example server starts");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let url = loop {
            let line = lines
                .next_line()
                .await
                .unwrap()
                .expect("the example prints its address");
            if let Some(url) = line.split(" at ").nth(1) {
                break url.trim().to_string();
            }
        };
        // Keep reading what it logs, so that its writes never meet a closed pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Example { child, url }
    }
}

async fn agent_run(service: &TestServer, mode: &str) -> Value {
    let python = venv();
    let example = Example::start(service, mode).await;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/official_client.py");
    let out = tokio::process::Command::new(python)
        .arg(script)
        .args([&example.url, &service.base_url, &service.test_key, mode])
        .output()
        .await
        .unwrap();
    drop(example.child);
    assert!(
        out.status.success(),
        "{mode}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{mode}: {e}: {}", String::from_utf8_lossy(&out.stdout)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_official_python_client_pays_and_gets_its_result_in_every_mode() {
    let service = TestServer::start().await;
    let jwks = walleot_client::Client::new(&service.base_url, &service.test_key)
        .unwrap()
        .jwks()
        .await
        .unwrap();
    for mode in [
        "two-step",
        "resubmit",
        "dynamic-tools",
        "progress",
        "elicitation",
        "auto",
    ] {
        let report = agent_run(&service, mode).await;
        assert_eq!(report["protocol"], "2026-07-28", "{mode}");
        assert_eq!(
            report["price"],
            serde_json::json!({"amount": 0.19, "currency": "USD"}),
            "{mode}"
        );
        assert_eq!(report["done"]["text"], "7", "{mode}: {report}");
        assert_eq!(report["done"]["isError"], false, "{mode}");
        // The paid result carries the service's receipt of the captured payment.
        let receipt = report["done"]["meta"]["walleot/receipt"]
            .as_str()
            .unwrap_or_else(|| panic!("{mode}: no receipt in {report}"));
        let claims = walleot_client::verify_receipt(receipt, &jwks).unwrap();
        assert_eq!(
            (
                claims.amount_captured,
                claims.metadata["walleot_tool"].as_str()
            ),
            (19, "add"),
            "{mode}"
        );
        let bad = report["bad_arguments"].as_str().unwrap();
        assert!(
            bad.contains("invalid arguments") && !bad.starts_with("protocol error"),
            "{mode}: a tool error the model can correct: {bad}"
        );
        if let Some(first) = report.get("first") {
            let required = &first["structured"];
            assert_eq!(first["isError"], true, "{mode}");
            assert_eq!(required["status"], "payment_required", "{mode}");
            let id = required["paymentId"].as_str().unwrap();
            assert!(
                !required["paymentUrl"].as_str().unwrap().contains(id),
                "{mode}: the payment id is not in the link"
            );
            // The session id from the link takes nothing.
            assert_eq!(
                report["stolen"]["structured"]["status"], "refused",
                "{mode}"
            );
        }
        if mode == "dynamic-tools" {
            let listed = report["listed_after_payment"].as_array().unwrap();
            assert!(listed.contains(&"confirm_add_payment".into()), "{listed:?}");
        }
    }
    // One payment a call: six modes, six captured charges of 0.19.
    let accounts = service
        .wallets()
        .merchant_accounts(&service.merchant_id, false)
        .await
        .unwrap();
    assert_eq!(accounts.first().map(|a| a.balance()), Some(6 * 19));
}
