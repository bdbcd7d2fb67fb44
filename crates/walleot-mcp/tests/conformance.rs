//! The conformance suite (`conformance/`): the example servers of the Rust, Python and
//! Node SDKs driven alike by the official MCP Python client, over stdio and streamable
//! HTTP, in every mode, with every attack, against real services. Cases a host MCP SDK
//! cannot pass are marked in the suite with the reason.

mod sdk_suites;
mod support;

use std::path::Path;
use std::time::Duration;

/// The suite's own environment (conformance/requirements.txt), which also runs the
/// Python SDK's example.
const PACKAGES: &[&str] = &[
    "mcp==2.3.0",
    "anyio==4.16.0",
    "pytest==9.2.0",
    "pytest-timeout==2.4.0",
    "setuptools==80.9.0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_three_sdks_behave_alike() {
    let services = sdk_suites::Services::start().await;
    let (bin, node) = tokio::task::spawn_blocking(|| {
        (
            sdk_suites::python_with_sdk("conformance-venv", PACKAGES),
            sdk_suites::node_sdk_built(),
        )
    })
    .await
    .unwrap();
    let python = bin.join("python");
    let run = tokio::process::Command::new(&python)
        .args(["-m", "pytest", "-q", "conformance"])
        .current_dir(sdk_suites::repo())
        .envs(services.env())
        .env("CONFORMANCE_RUST_SERVER", support::example_binary())
        .env("CONFORMANCE_PYTHON", &python)
        .env("CONFORMANCE_NODE_DIR", Path::new(&node))
        .env("CONFORMANCE_REQUIRE_ALL", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(1200), run)
        .await
        .expect("the conformance suite finishes within 20 minutes")
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the conformance suite failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains("skipped"),
        "every case runs under cargo test:\n{stdout}"
    );
    println!("{stdout}");
}
