//! What the Python and Node SDK suites share: the two services they run against, named
//! to them by the environment, and a copy of an SDK's sources under the target
//! directory (so a run never writes into the source tree).

use axum::routing::post;
use std::path::Path;
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
        let main =
            TestServer::start_with(|config| config.limits.sessions_per_window = 100_000).await;
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

    /// The environment the suites read: `WALLEOT_API_URL`, `WALLEOT_API_KEY` and the
    /// `WALLEOT_LIMITED_*` three.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("WALLEOT_API_URL", self.main.base_url.clone()),
            ("WALLEOT_API_KEY", self.main.test_key.clone()),
            ("WALLEOT_LIMITED_API_URL", self.limited.base_url.clone()),
            ("WALLEOT_LIMITED_API_KEY", self.limited.test_key.clone()),
            ("WALLEOT_LIMITED_CLOCK_URL", self.clock_url.clone()),
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
