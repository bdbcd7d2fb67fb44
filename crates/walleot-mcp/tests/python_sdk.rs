//! The Python SDK (`sdks/python`, the `walleot` package for the official `mcp`
//! package's MCPServer): its pytest suite, run against real services. Unit tests
//! cover prices, argument hashing, the store and the answers; the end-to-end tests
//! drive MCPServers and the example server with the official Python MCP client and pay
//! through the service's test helper.
//!
//! The virtual environment (under the target directory) is installed once with `mcp`
//! and `pytest`; the SDK itself is reinstalled from a copy of its sources every run,
//! so the suite always tests the code as it is now and the source tree stays clean.

mod sdk_suites;

use std::time::Duration;

const PACKAGES: &[&str] = &[
    "mcp==2.3.0",
    "pytest==9.2.0",
    "setuptools==80.9.0",
    "redis==8.1.0",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_passes_its_tests_against_a_real_service() {
    // The suite makes a few hundred POSTs a minute (each payment creates, pays and
    // captures): the main service allows them; the limited one does not.
    let services = sdk_suites::Services::start().await;
    let bin =
        tokio::task::spawn_blocking(|| sdk_suites::python_with_sdk("python-sdk-venv", PACKAGES))
            .await
            .unwrap();
    let run = tokio::process::Command::new(bin.join("python"))
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-rs",
            "tests",
        ])
        .current_dir(sdk_suites::repo().join("sdks/python"))
        .envs(services.env())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(900), run)
        .await
        .expect("pytest finishes within 15 minutes")
        .expect("pytest runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "pytest failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    assert!(
        !stdout.contains("skipped"),
        "every test runs under cargo test:\n{stdout}"
    );
    println!("{stdout}");
}
