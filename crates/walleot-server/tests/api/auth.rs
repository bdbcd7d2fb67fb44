use crate::helpers::{assert_error, spawn_app};
use reqwest::Method;
use serde_json::json;
use walleot_server::domain::{ApiKey, Livemode};

#[tokio::test]
async fn requests_without_a_valid_key_answer_401() {
    let app = spawn_app().await;
    let unknown = ApiKey::generate(Livemode::Test);
    let mut typo = app.key().to_string();
    typo.pop();
    typo.push(if app.key().ends_with('A') { 'B' } else { 'A' });
    let cases: Vec<(&str, Option<String>)> = vec![
        ("missing", None),
        ("empty", Some(String::new())),
        ("basic", Some(format!("Basic {}", app.key()))),
        ("bearer only", Some("Bearer".into())),
        ("bearer space", Some("Bearer ".into())),
        ("publishable", Some("Bearer pk_test_123".into())),
        ("typo", Some(format!("Bearer {typo}"))),
        (
            "unknown",
            Some(format!("Bearer {}", unknown.expose_secret())),
        ),
        ("long", Some(format!("Bearer sk_test_{}", "a".repeat(5000)))),
    ];
    for (name, header) in cases {
        for (method, path) in [
            (Method::GET, "/v1/sessions"),
            (Method::POST, "/v1/sessions"),
            (Method::GET, "/v1/nope"),
        ] {
            let mut req = app.http.request(method.clone(), app.url(path));
            if let Some(h) = &header {
                req = req.header("authorization", h);
            }
            let response = req.send().await.unwrap();
            assert!(
                response.headers().contains_key("x-ratelimit-limit"),
                "{name}"
            );
            let message = assert_error(response, 401, "unauthorized").await;
            assert!(
                !message.contains(app.key()),
                "{name}: the message echoes a key"
            );
        }
    }
}

#[tokio::test]
async fn a_revoked_key_stops_working_at_once() {
    let app = spawn_app().await;
    let services = &app.server.services;
    let merchant = services
        .merchants
        .find(&app.server.merchant_id)
        .await
        .unwrap();
    let (record, key) = services
        .keys
        .create(&merchant.id, Livemode::Test, 0)
        .await
        .unwrap();
    assert_eq!(
        app.get("/v1/sessions", key.expose_secret()).await.status(),
        200
    );
    services.keys.revoke(&record.id, 1).await.unwrap();
    let message = assert_error(
        app.get("/v1/sessions", key.expose_secret()).await,
        401,
        "unauthorized",
    )
    .await;
    assert!(message.contains("revoked"), "{message}");
    assert!(
        services.keys.revoke(&record.id, 2).await.is_err(),
        "revoking twice is refused"
    );
}

#[tokio::test]
async fn a_merchant_never_sees_another_merchants_sessions() {
    let app = spawn_app().await;
    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    let mine = app.create_session().await;
    assert_error(
        app.get(&format!("/v1/sessions/{mine}"), &other).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.post(&format!("/v1/sessions/{mine}/cancel"), &other)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.post(&format!("/v1/test_helpers/sessions/{mine}/pay"), &other)
            .await,
        404,
        "not_found",
    )
    .await;
    let list: serde_json::Value = app.get("/v1/sessions", &other).await.json().await.unwrap();
    assert!(list["data"].as_array().unwrap().is_empty());
    assert_eq!(app.status_of(&mine).await, "pending");
}

#[tokio::test]
async fn test_and_live_keys_see_only_their_own_mode() {
    let app = spawn_app().await;
    let test_session = app.create_session().await;
    let live_session = app
        .create_session_with(
            &app.server.live_key,
            json!({"amount": 200, "currency": "usd"}),
        )
        .await;
    assert_eq!(live_session["livemode"], true);
    let live_id = live_session["sessionId"].as_str().unwrap();
    assert_error(
        app.get(
            &format!("/v1/sessions/{test_session}"),
            &app.server.live_key,
        )
        .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.get(&format!("/v1/sessions/{live_id}"), app.key()).await,
        404,
        "not_found",
    )
    .await;
    let live_list: serde_json::Value = app
        .get("/v1/sessions", &app.server.live_key)
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = live_list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["sessionId"].clone())
        .collect();
    assert_eq!(ids, vec![json!(live_id)]);
}

#[tokio::test]
async fn keys_are_stored_only_as_hashes() {
    let app = spawn_app().await;
    app.create_session().await;
    let stored = app.server.database_contents().await;
    for key in [app.key(), &app.server.live_key] {
        // What is kept of a key to show it later: found, so the contents were read.
        let shown = &key.as_bytes()[..12];
        assert!(
            stored.windows(shown.len()).any(|w| w == shown),
            "the keys were read"
        );
        let secret_part = &key.as_bytes()[12..];
        assert!(
            !stored.windows(secret_part.len()).any(|w| w == secret_part),
            "a key is stored in clear"
        );
    }
}

#[tokio::test]
async fn the_bearer_scheme_is_accepted_in_any_case() {
    let app = spawn_app().await;
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        for header in [
            format!("{scheme} {}", app.key()),
            format!("{scheme}   {}", app.key()),
        ] {
            let response = app
                .http
                .get(app.url("/v1/sessions"))
                .header("authorization", &header)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{header:?}");
        }
    }
    // Another scheme stays refused, whatever its case.
    let response = app
        .http
        .get(app.url("/v1/sessions"))
        .header("authorization", format!("BEARERX {}", app.key()))
        .send()
        .await
        .unwrap();
    assert_error(response, 401, "unauthorized").await;
}

#[tokio::test]
async fn answers_carry_hsts_when_the_public_url_is_https() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.public_url = Some("https://pay.example.com".into());
    })
    .await;
    for (path, key) in [
        ("/v1/sessions", Some(app.key())),
        ("/v1/sessions", None),
        ("/v1/nope", Some(app.key())),
        ("/v1/openapi.json", None),
        ("/healthz", None),
        ("/wallet", None),
    ] {
        let response = app.request(Method::GET, path, key, None).await;
        assert_eq!(
            response
                .headers()
                .get("strict-transport-security")
                .map(|v| v.to_str().unwrap()),
            Some("max-age=63072000"),
            "{path}"
        );
    }
    let plain = spawn_app().await;
    let response = plain.get("/v1/sessions", plain.key()).await;
    assert!(!response.headers().contains_key("strict-transport-security"));
}
