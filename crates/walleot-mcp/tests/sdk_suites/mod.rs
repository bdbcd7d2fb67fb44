//! What the Python and Node SDK suites share: the two services they run against, named
//! to them by the environment, and a copy of an SDK's sources under the target
//! directory (so a run never writes into the source tree).

// Each suite uses the parts it needs.
#![allow(dead_code)]

use axum::routing::post;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use walleot_server::testing::TestServer;

/// POSTs a minute the rate-limited service allows (session creations, pays, captures).
const LIMITED_POSTS: u32 = 6;

/// A service that allows the suite's few hundred POSTs a minute, and one that allows
/// few, with an address that moves its clock on 61 s so that its window starts again.
pub struct Services {
    pub main: TestServer,
    pub limited: TestServer,
    pub clock_url: String,
}

impl Services {
    pub async fn start() -> Self {
        let main = TestServer::start_with(|config| {
            config.limits.sessions_per_window = 100_000;
            config.limits.status_per_window = 100_000;
        })
        .await;
        let limited =
            TestServer::start_with(|config| config.limits.sessions_per_window = LIMITED_POSTS)
                .await;
        let clock_url = clock_control(&limited).await;
        Services {
            main,
            limited,
            clock_url,
        }
    }

    /// The environment the suites read: `WALLEOT_API_URL`, `WALLEOT_API_KEY`, the
    /// `WALLEOT_LIMITED_*` three and `WALLEOT_REDIS_URL`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WALLEOT_API_URL", self.main.base_url.clone()),
            ("WALLEOT_API_KEY", self.main.test_key.clone()),
            ("WALLEOT_LIMITED_API_URL", self.limited.base_url.clone()),
            ("WALLEOT_LIMITED_API_KEY", self.limited.test_key.clone()),
            ("WALLEOT_LIMITED_CLOCK_URL", self.clock_url.clone()),
            // The machine's Redis, for the SDKs' shared payment stores.
            ("WALLEOT_REDIS_URL", "redis://127.0.0.1:6379/0".into()),
        ]
    }
}

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

/// Copies `from` into `to`, leaving out the entries named in `skip` at any depth.
pub fn copy_tree(from: &Path, to: &Path, skip: &[&str]) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name_text = name.to_string_lossy();
        if skip
            .iter()
            .any(|s| name_text == *s || name_text.ends_with(s))
        {
            continue;
        }
        let target = to.join(&name);
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target, skip);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The repository's root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The `bin` of a virtual environment (under the target directory) with `packages`,
/// and the Python SDK installed from a fresh copy of its sources, so that a run always
/// tests the SDK as it is now.
pub fn python_with_sdk(venv: &str, packages: &[&str]) -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let bin = walleot_server::venv::python_tools(tmp, venv, packages);
    let sdk = repo().join("sdks/python");
    let copy = tmp.join(format!("{venv}-sdk-src"));
    let _ = std::fs::remove_dir_all(&copy);
    std::fs::create_dir_all(&copy).unwrap();
    for part in ["pyproject.toml", "README.md"] {
        std::fs::copy(sdk.join(part), copy.join(part)).unwrap();
    }
    copy_tree(
        &sdk.join("src"),
        &copy.join("src"),
        &["__pycache__", ".egg-info", "build"],
    );
    let installed = Command::new(bin.join("python"))
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

fn npm(dir: &Path, args: &[&str]) {
    let status = Command::new("npm")
        .args(args)
        .current_dir(dir)
        .status()
        .expect("npm runs");
    assert!(
        status.success(),
        "npm {} failed in {}",
        args.join(" "),
        dir.display()
    );
}

/// A built copy of the Node SDK under the target directory (`target/tmp/node-sdk`),
/// its dependencies installed with `npm ci` on the first run and again whenever
/// `package-lock.json` changes.
pub fn node_sdk_built() -> PathBuf {
    let copy = Path::new(env!("CARGO_TARGET_TMPDIR")).join("node-sdk");
    if let Ok(entries) = std::fs::read_dir(&copy) {
        for entry in entries.flatten() {
            if entry.file_name() == "node_modules" {
                continue;
            }
            let path = entry.path();
            let _ = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
        }
    }
    copy_tree(&repo().join("sdks/node"), &copy, &["node_modules", "dist"]);
    let lock = std::fs::read(copy.join("package-lock.json")).expect("sdks/node has a lock file");
    let stamp = copy.join("node_modules/.installed-lock");
    if std::fs::read(&stamp).ok().as_deref() != Some(lock.as_slice()) {
        npm(&copy, &["ci", "--no-audit", "--no-fund"]);
        std::fs::write(&stamp, &lock).unwrap();
    }
    npm(&copy, &["run", "build"]);
    copy
}
