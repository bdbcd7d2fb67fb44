use crate::helpers::{assert_error, spawn_app_with};
use reqwest::Response;
use serde_json::json;
use walleot_server::domain::Livemode;

fn header(response: &Response, name: &str) -> String {
    response
        .headers()
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header"))
        .to_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn session_creation_is_limited_per_key_with_headers_on_every_answer() {
    let app = spawn_app_with(|c| {
        c.limits.sessions_per_window = 3;
        c.limits.status_per_window = 5;
    })
    .await;
    let body = json!({"amount": 200, "currency": "usd"});
    for remaining in [2, 1, 0] {
        let response = app.post_json("/v1/sessions", app.key(), &body).await;
        assert_eq!(response.status(), 200);
        assert_eq!(header(&response, "x-ratelimit-limit"), "3");
        assert_eq!(
            header(&response, "x-ratelimit-remaining"),
            remaining.to_string()
        );
        assert_eq!(header(&response, "x-ratelimit-reset"), "60");
        assert_eq!(
            header(&response, "ratelimit-policy"),
            "\"sessions\";q=3;w=60"
        );
        assert_eq!(
            header(&response, "ratelimit"),
            format!("\"sessions\";r={remaining};t=60")
        );
    }
    app.server.clock.advance_ms(20_000);
    let refused = app.post_json("/v1/sessions", app.key(), &body).await;
    assert_eq!(header(&refused, "retry-after"), "40");
    assert_eq!(header(&refused, "x-ratelimit-reset"), "40");
    assert_eq!(header(&refused, "x-ratelimit-remaining"), "0");
    assert_error(refused, 429, "rate_limited").await;

    // Status checks have their own budget, and other keys their own.
    let list = app.get("/v1/sessions", app.key()).await;
    assert_eq!(list.status(), 200);
    assert_eq!(header(&list, "x-ratelimit-limit"), "5");
    let other = app.server.other_merchant_key("Other", Livemode::Test).await;
    assert_eq!(
        app.post_json("/v1/sessions", &other, &body).await.status(),
        200
    );

    // A new window opens when the old one ends.
    app.server.clock.advance_ms(40_000);
    let again = app.post_json("/v1/sessions", app.key(), &body).await;
    assert_eq!(again.status(), 200);
    assert_eq!(header(&again, "x-ratelimit-remaining"), "2");
}

#[tokio::test]
async fn status_checks_are_limited_and_errors_carry_the_headers() {
    let app = spawn_app_with(|c| c.limits.status_per_window = 2).await;
    let missing = app
        .get("/v1/sessions/sess_000000000000000000000000", app.key())
        .await;
    assert_eq!(header(&missing, "x-ratelimit-remaining"), "1");
    assert_error(missing, 404, "not_found").await;
    assert_eq!(app.get("/v1/sessions", app.key()).await.status(), 200);
    let refused = app.get("/v1/sessions", app.key()).await;
    assert_eq!(header(&refused, "ratelimit"), "\"status\";r=0;t=60");
    assert_error(refused, 429, "rate_limited").await;
}

#[tokio::test]
async fn requests_without_a_valid_key_are_limited_per_client() {
    let app = spawn_app_with(|c| c.limits.anonymous_per_window = 2).await;
    for _ in 0..2 {
        let r = app.get("/v1/sessions", "sk_test_wrong").await;
        assert_error(r, 401, "unauthorized").await;
    }
    let refused = app.get("/v1/sessions", "sk_test_wrong").await;
    assert!(refused.headers().contains_key("retry-after"));
    assert_error(refused, 429, "rate_limited").await;
    // A valid key is not held back by someone else's guessing.
    assert_eq!(app.get("/v1/sessions", app.key()).await.status(), 200);
}

/// Two instances on one database and one Redis (the local one, started by `.ci/run`),
/// as behind a balancer: a key's budget is spent across both, and each reports Redis
/// in its health check.
#[tokio::test]
async fn instances_sharing_a_redis_share_each_keys_budget() {
    let redis = Some("redis://127.0.0.1:6379".to_string());
    let limits = |c: &mut walleot_server::startup::Config| {
        c.limits.status_per_window = 3;
        c.redis_url = redis.clone();
    };
    let one = spawn_app_with(limits).await;
    let two = spawn_app_with(|c| {
        limits(c);
        c.database_url = one.server.database_url.clone();
    })
    .await;
    let mut seen = Vec::new();
    for app in [&one, &two, &one, &two] {
        // `one`'s key, valid on both: they share the database.
        let response = app.get("/v1/sessions", one.key()).await;
        seen.push((
            response.status().as_u16(),
            header(&response, "x-ratelimit-remaining"),
        ));
    }
    let remaining = |n: &str| n.to_string();
    assert_eq!(
        seen,
        [
            (200, remaining("2")),
            (200, remaining("1")),
            (200, remaining("0")),
            (429, remaining("0"))
        ]
    );
    let health: serde_json::Value = one
        .request(reqwest::Method::GET, "/healthz", None, None)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        health,
        json!({"status": "ok", "database": "ok", "redis": "ok"})
    );
}

/// An unreachable Redis given at start is a clear failure to start, not a silent
/// fallback.
#[tokio::test]
async fn an_unreachable_redis_stops_the_start() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let services = walleot_server::startup::Services::open("sqlite::memory:", None)
        .await
        .unwrap();
    let config = walleot_server::startup::Config {
        listen: "127.0.0.1:0".into(),
        redis_url: Some(format!("redis://127.0.0.1:{closed}")),
        ..Default::default()
    };
    let clock = std::sync::Arc::new(walleot_server::domain::SystemClock);
    let failed = walleot_server::startup::Application::build(config, services, clock).await;
    let error = failed
        .err()
        .expect("no start without its Redis")
        .to_string();
    assert!(error.contains("--redis-url"), "{error}");
}
