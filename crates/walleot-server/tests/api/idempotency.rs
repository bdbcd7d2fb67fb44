use crate::helpers::{assert_error, spawn_app};
use reqwest::Response;
use serde_json::{json, Value};
use walleot_server::domain::Livemode;

async fn post_with_key(
    app: &crate::helpers::App,
    api_key: &str,
    idem: &str,
    body: &str,
) -> Response {
    app.http
        .post(app.url("/v1/sessions"))
        .bearer_auth(api_key)
        .header("content-type", "application/json")
        .header("idempotency-key", idem)
        .body(body.to_string())
        .send()
        .await
        .unwrap()
}

async fn session_count(app: &crate::helpers::App, key: &str) -> usize {
    let list: Value = app
        .get("/v1/sessions?limit=100", key)
        .await
        .json()
        .await
        .unwrap();
    list["data"].as_array().unwrap().len()
}

#[tokio::test]
async fn the_same_key_and_body_replay_the_first_answer() {
    let app = spawn_app().await;
    let first = post_with_key(
        &app,
        app.key(),
        "order-1",
        r#"{"amount":200,"currency":"usd"}"#,
    )
    .await;
    assert_eq!(first.status(), 200);
    assert!(first.headers().get("idempotent-replayed").is_none());
    let first: Value = first.json().await.unwrap();
    // Same JSON value, other spacing and key order.
    let again = post_with_key(
        &app,
        app.key(),
        "order-1",
        r#"{ "currency": "usd", "amount": 200 }"#,
    )
    .await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert!(again.headers().contains_key("x-ratelimit-remaining"));
    let again: Value = again.json().await.unwrap();
    assert_eq!(first, again);
    assert_eq!(session_count(&app, app.key()).await, 1);
}

#[tokio::test]
async fn the_same_key_with_another_body_answers_422() {
    let app = spawn_app().await;
    post_with_key(&app, app.key(), "k", r#"{"amount":200,"currency":"usd"}"#).await;
    let other = post_with_key(&app, app.key(), "k", r#"{"amount":300,"currency":"usd"}"#).await;
    assert_error(other, 422, "idempotency_key_reused").await;
    let other_path = app
        .http
        .post(app.url("/v1/sessions/sess_000000000000000000000000/cancel"))
        .bearer_auth(app.key())
        .header("idempotency-key", "k")
        .send()
        .await
        .unwrap();
    assert_error(other_path, 422, "idempotency_key_reused").await;
    assert_eq!(session_count(&app, app.key()).await, 1);
}

#[tokio::test]
async fn keys_are_scoped_to_the_merchant_and_mode() {
    let app = spawn_app().await;
    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    let body = r#"{"amount":200,"currency":"usd"}"#;
    let a: Value = post_with_key(&app, app.key(), "shared", body)
        .await
        .json()
        .await
        .unwrap();
    let b: Value = post_with_key(&app, &other, "shared", body)
        .await
        .json()
        .await
        .unwrap();
    let c: Value = post_with_key(&app, &app.server.live_key, "shared", body)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(a["sessionId"], b["sessionId"]);
    assert_ne!(a["sessionId"], c["sessionId"]);
    assert_eq!(c["livemode"], true);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_duplicates_create_one_session() {
    let app = std::sync::Arc::new(spawn_app().await);
    let mut tasks = Vec::new();
    for _ in 0..24 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let r = post_with_key(
                &app,
                app.key(),
                "race",
                r#"{"amount":777,"currency":"usd"}"#,
            )
            .await;
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap())
        }));
    }
    let mut ids = std::collections::HashSet::new();
    for task in tasks {
        let (status, body) = task.await.unwrap();
        match status {
            200 => {
                ids.insert(body["sessionId"].as_str().unwrap().to_string());
            }
            409 => assert_eq!(body["error"]["type"], "conflict"),
            other => panic!("unexpected {other}: {body}"),
        }
    }
    assert_eq!(ids.len(), 1, "every success names the same session");
    assert_eq!(session_count(&app, app.key()).await, 1);
}

#[tokio::test]
async fn refusals_are_replayed_too() {
    let app = spawn_app().await;
    let bad = r#"{"amount":-1,"currency":"usd"}"#;
    let first = assert_error(
        post_with_key(&app, app.key(), "bad", bad).await,
        400,
        "invalid_request",
    )
    .await;
    let again = post_with_key(&app, app.key(), "bad", bad).await;
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    assert_eq!(assert_error(again, 400, "invalid_request").await, first);
}

#[tokio::test]
async fn malformed_keys_are_refused() {
    let app = spawn_app().await;
    for key in ["x".repeat(256), "tab\there".to_string(), "é".to_string()] {
        let response = app
            .http
            .post(app.url("/v1/sessions"))
            .bearer_auth(app.key())
            .header("content-type", "application/json")
            .header(
                "idempotency-key",
                reqwest::header::HeaderValue::from_bytes(key.as_bytes()).unwrap(),
            )
            .body(r#"{"amount":1,"currency":"usd"}"#)
            .send()
            .await
            .unwrap();
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(message.contains("Idempotency-Key"), "{message}");
    }
    assert_eq!(session_count(&app, app.key()).await, 0);
}

#[tokio::test]
async fn answers_are_kept_for_a_day_then_forgotten() {
    let app = spawn_app().await;
    let body = r#"{"amount":200,"currency":"usd"}"#;
    let first: Value = post_with_key(&app, app.key(), "daily", body)
        .await
        .json()
        .await
        .unwrap();
    app.server.clock.advance_ms(23 * 3600 * 1000);
    let later: Value = post_with_key(&app, app.key(), "daily", body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(first["sessionId"], later["sessionId"]);
    app.server.clock.advance_ms(2 * 3600 * 1000);
    let next_day: Value = post_with_key(&app, app.key(), "daily", body)
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(first["sessionId"], next_day["sessionId"]);
}

#[tokio::test]
async fn an_idempotent_cancel_is_replayed() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let cancel = || {
        app.http
            .post(app.url(&format!("/v1/sessions/{id}/cancel")))
            .bearer_auth(app.key())
            .header("idempotency-key", "cancel-1")
            .send()
    };
    let first = cancel().await.unwrap();
    assert_eq!(first.status(), 200);
    let again = cancel().await.unwrap();
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["status"], "cancelled");
    let events = app.server.services.store.session_events(&id).await.unwrap();
    assert_eq!(
        events.len(),
        2,
        "one creation, one cancellation: {events:?}"
    );
    let _ = json!(null);
}
