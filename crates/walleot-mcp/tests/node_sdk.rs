//! The Node SDK (`sdks/node`, the `walleot` package for the official TypeScript MCP
//! SDK): its build and its `node --test` suite, run against real services. Unit tests
//! cover prices, argument hashing, the store and the answers; the end-to-end tests
//! drive McpServers and the example server with the official TypeScript MCP client and
//! pay through the service's test helper.
//!
//! The SDK is built from a copy of its sources under the target directory, so the
//! source tree stays clean; its dependencies are installed there with `npm ci` on the
//! first run and again whenever `package-lock.json` changes.

mod sdk_suites;

use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_sdk_passes_its_tests_against_a_real_service() {
    let services = sdk_suites::Services::start().await;
    let dir = tokio::task::spawn_blocking(sdk_suites::node_sdk_built)
        .await
        .unwrap();
    let run = tokio::process::Command::new("npm")
        .args(["test"])
        .current_dir(&dir)
        .envs(services.env())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("the Node suite finishes within 15 minutes")
        .expect("npm test runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the Node suite failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        stdout.contains("# skipped 0"),
        "every test runs under cargo test:\n{stdout}"
    );
    println!("{stdout}");
}
