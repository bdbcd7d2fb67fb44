//! The Python SDK (`sdks/python`, the `walleot` package for the official `mcp`
//! package's MCPServer): its pytest suite, run against real services. Unit tests
//! cover prices, argument hashing, the store and the answers; the end-to-end tests
//! drive MCPServers and the example server with the official Python MCP client and pay
//! through the service's test helper.
//!
//! The virtual environment (under the target directory) is installed once with `mcp`
//! and `pytest`; the SDK itself is reinstalled from a copy of its sources every run,
//! so the suite always tests the code as it is now and the source tree stays clean.

use axum::routing::post;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use walleot_server::testing::TestServer;

const PACKAGES: &[&str] = &["mcp==2.3.0", "pytest==9.2.0", "setuptools==80.9.0"];

/// POSTs a minute the rate-limited service allows (session creations, pays, captures).
const LIMITED_POSTS: u32 = 6;

fn sdk_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdks/python")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if name_text == "__pycache__" || name_text.ends_with(".egg-info") || name_text == "build" {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The venv's `bin`, with the SDK installed from a fresh copy of its sources.
fn venv_with_sdk() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = walleot_server::venv::python_tools(tmp, "python-sdk-venv", PACKAGES);
    let copy = tmp.join("python-sdk-src");
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for part in ["pyproject.toml", "README.md"] {
        std::fs::copy(sdk_dir().join(part), copy.join(part)).unwrap();
    }
    copy_tree(&sdk_dir().join("src"), &copy.join("src"));
    let installed = std::process::Command::new(bin.join("python"))
        .args([
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--force-reinstall",
        ])
        .arg(&copy)
        .status()
        .expect("pip runs");
    assert!(installed.success(), "pip install of sdks/python failed");
    bin
}

/// An address whose POST moves the service's clock on 61 s, so that its rate-limit
/// window starts again (the tests of settling under a rate limit need it).
async fn clock_control(service: &TestServer) -> String {
    let clock = service.clock.clone();
    let app = axum::Router::new().route(
        "/advance",
        post(move || {
            let clock = Arc::clone(&clock);
            async move {
                clock.advance_ms(61_000);
                "advanced"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/advance", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_sdk_passes_its_tests_against_a_real_service() {
    // The suite makes a few hundred POSTs a minute (each payment creates, pays and
    // captures): the main service allows them; the limited one does not.
    let service =
        TestServer::start_with(|config| config.limits.sessions_per_window = 100_000).await;
    let limited =
        TestServer::start_with(|config| config.limits.sessions_per_window = LIMITED_POSTS).await;
    let clock = clock_control(&limited).await;
    let bin = tokio::task::spawn_blocking(venv_with_sdk).await.unwrap();
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
        .current_dir(sdk_dir())
        .env("WALLEOT_API_URL", &service.base_url)
        .env("WALLEOT_API_KEY", &service.test_key)
        .env("WALLEOT_LIMITED_API_URL", &limited.base_url)
        .env("WALLEOT_LIMITED_API_KEY", &limited.test_key)
        .env("WALLEOT_LIMITED_CLOCK_URL", &clock)
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
