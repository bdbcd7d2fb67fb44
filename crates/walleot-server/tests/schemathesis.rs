//! Schemathesis, with all of its checks, against the OpenAPI document the service
//! serves: every answer must match the document, documented input must be accepted and
//! undocumented input refused. The tool is installed into a virtual environment of its
//! own under the target directory, once.

use std::path::{Path, PathBuf};
use std::process::Command;
use walleot_server::testing::TestServer;

const PACKAGE: &str = "schemathesis==4.32.5";

/// A bounded run: a fixed seed, so that a failure reproduces, and few enough examples
/// per operation to finish in well under a minute on two cores.
const MAX_EXAMPLES: &str = "50";
const SEED: &str = "20261126";

/// Where the run's configuration departs from the defaults, and why.
const CONFIG: &str = r#"
# `wait` makes a read of a pending session a long poll of up to 60 seconds: real time
# that the fuzzer would spend waiting, not testing. Reads wait one second here; the
# long poll and its refusals of bad values have tests of their own (tests/api/long_poll.rs).
[[operations]]
include-name = "GET /sessions/{sessionId}"
parameters = { "query.wait" = 1 }

# The generator reuses short Idempotency-Key values with different requests, which the
# API refuses with 422 `idempotency_key_reused` by design (and documents). No other
# answer of the API is a 422.
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "3xx", 401, 403, 404, 409, 422, 429, "5xx"]
"#;

fn venv() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    walleot_server::venv::python_tools(tmp, "schemathesis-venv", &[PACKAGE]).join("schemathesis")
}

#[tokio::test(flavor = "multi_thread")]
async fn schemathesis_finds_nothing_with_all_checks() {
    let schemathesis = tokio::task::spawn_blocking(venv).await.unwrap();
    let server = TestServer::start_with(|c| {
        // Thousands of requests in a minute, some of them without a key.
        c.limits.sessions_per_window = 1_000_000;
        c.limits.status_per_window = 1_000_000;
        c.limits.anonymous_per_window = 1_000_000;
    })
    .await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("schemathesis.toml");
    std::fs::write(&config, CONFIG).unwrap();
    let base = format!("{}/v1", server.base_url);
    let auth = format!("Authorization: Bearer {}", server.test_key);
    let dir = work.path().to_path_buf();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(schemathesis)
            .current_dir(dir)
            .env("NO_COLOR", "1")
            .arg("--config-file")
            .arg(&config)
            .args(["run", &format!("{base}/openapi.json"), "--url", &base])
            .args(["--header", &auth])
            .args(["--checks", "all"])
            .args(["--max-examples", MAX_EXAMPLES, "--seed", SEED])
            .args(["--generation-database", "none", "--no-color"])
            .output()
            .expect("schemathesis runs")
    })
    .await
    .unwrap();
    let report = format!(
        "{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.status.success(), "schemathesis failed:\n{report}");
    assert!(
        report.contains("23 selected / 23 total"),
        "not every operation was tested:\n{report}"
    );
}
