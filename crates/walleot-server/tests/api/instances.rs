//! Two instances of the service on one database, as behind a load balancer: each with
//! its own store (its own connections) and its own HTTP port. Whatever instance a
//! request reaches, and however requests race across them, the service behaves as one.

use crate::helpers::{spawn_app, spawn_app_with, App};
use futures::future::join_all;
use serde_json::{json, Value};
use walleot_server::domain::payments;

/// A second instance on the first one's database.
async fn beside(one: &App) -> App {
    let url = one.server.database_url.clone();
    spawn_app_with(|c| c.database_url = url).await
}

/// Sends `body` to `path` until the answer is not a retryable conflict (the answer a
/// request gets while the same idempotency key runs on its instance, or when another
/// instance answered it first).
async fn send_until_settled(
    app: &App,
    path: &str,
    key: &str,
    idempotency_key: Option<&str>,
    body: &Value,
) -> (u16, Value) {
    for _ in 0..100 {
        let mut request = app.http.post(app.url(path)).bearer_auth(key).json(body);
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("idempotency-key", idempotency_key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let answer: Value = response.json().await.unwrap();
        let message = answer["error"]["message"].as_str().unwrap_or_default();
        if status == 409 && (message.contains("meanwhile") || message.contains("still being")) {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
            continue;
        }
        return (status, answer);
    }
    panic!("{path} never settled");
}

#[tokio::test]
async fn duplicates_sent_to_both_instances_create_one_session() {
    let one = spawn_app().await;
    let two = beside(&one).await;
    let key = one.key().to_string();
    let body = json!({"amount": 250, "currency": "usd", "description": "once"});
    let answers = join_all((0..16).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        send_until_settled(app, "/v1/sessions", &key, Some("order-77"), &body)
    }))
    .await;
    let ids: Vec<&str> = answers
        .iter()
        .map(|(status, answer)| {
            assert_eq!(*status, 200, "{answer}");
            answer["sessionId"].as_str().unwrap()
        })
        .collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    for app in [&one, &two] {
        let list: Value = app
            .get("/v1/sessions?limit=100", &key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
    }
}

#[tokio::test]
async fn a_session_is_paid_once_whichever_instances_race() {
    let one = spawn_app().await;
    let two = beside(&one).await;
    let key = one.key().to_string();
    let id = one.create_session().await;
    let path = format!("/v1/test_helpers/sessions/{id}/pay");
    let empty = json!({});
    let answers = join_all((0..12).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        send_until_settled(app, &path, &key, None, &empty)
    }))
    .await;
    let paid = answers.iter().filter(|(status, _)| *status == 200).count();
    assert!(paid >= 1, "{answers:?}");
    for (status, answer) in &answers {
        assert!(
            *status == 200 || *status == 409,
            "a racing payment fails cleanly: {status} {answer}"
        );
    }
    assert_eq!(one.server.transfers_of(&id).await, 1, "paid once");
    assert_eq!(two.status_of(&id).await, "paid");
    let mismatches = one.server.wallets().verify_ledger().await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[tokio::test]
async fn held_funds_are_captured_once_whichever_instances_race() {
    let one = spawn_app().await;
    let two = beside(&one).await;
    let key = one.key().to_string();
    let session = one
        .create_session_with(
            &key,
            json!({"amount": 300, "currency": "usd", "captureMethod": "manual"}),
        )
        .await;
    let id = session["sessionId"].as_str().unwrap().to_string();
    one.pay_as_new_payer(&id).await;
    let wallets = one.server.wallets();
    let path = format!("/v1/sessions/{id}/capture");
    let empty = json!({});
    let answers = join_all((0..10).map(|i| {
        let app = if i % 2 == 0 { &one } else { &two };
        send_until_settled(app, &path, &key, None, &empty)
    }))
    .await;
    for (status, answer) in &answers {
        assert!(*status == 200 || *status == 409, "{status} {answer}");
    }
    assert!(answers.iter().any(|(status, _)| *status == 200));
    let read: Value = two
        .get(&format!("/v1/sessions/{id}"), &key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["captureStatus"], "captured", "{read}");
    let merchant = wallets
        .merchant_accounts(&one.server.merchant_id, false)
        .await
        .unwrap()[0]
        .clone();
    assert_eq!(merchant.balance(), 300, "captured once");
    let mismatches = wallets.verify_ledger().await.unwrap();
    assert!(mismatches.is_empty(), "{mismatches:?}");
}

#[tokio::test]
async fn both_instances_sweep_without_expiring_anything_twice() {
    let one = spawn_app().await;
    let two = beside(&one).await;
    let mut ids = Vec::new();
    for _ in 0..30 {
        ids.push(one.create_session().await);
    }
    let later = walleot_server::domain::Clock::now_ms(&*one.server.clock) + 8 * 86_400_000;
    let (a, b) = tokio::join!(
        payments::expire_due(&*one.server.services.store, later, 100),
        payments::expire_due(&*two.server.services.store, later, 100),
    );
    assert_eq!(a.unwrap() + b.unwrap(), ids.len(), "each expired once");
    for id in &ids {
        let events = one.server.services.store.session_events(id).await.unwrap();
        let kinds: Vec<&str> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["session.created", "session.expired"], "{id}");
    }
}

/// An instance that stalls in the middle of a write, holding a session's row, holds up
/// a change of that session on every other instance for seconds, not until TCP gives
/// up: the waiting request is answered 503 with `Retry-After`, and succeeds once the
/// row is free. PostgreSQL only: one SQLite file has one service.
#[tokio::test]
async fn a_row_held_by_a_stalled_writer_answers_503_in_seconds() {
    let app = spawn_app().await;
    if app.server.database_url.starts_with("sqlite:") {
        return;
    }
    let id = app.create_session().await;
    let stalled = walleot_server::testing::OpenTransaction::begin(
        &app.server.database_url,
        &format!("SELECT 1 FROM sessions WHERE id = '{id}' FOR UPDATE"),
    )
    .await
    .unwrap();
    let started = std::time::Instant::now();
    let cancel = app
        .post(&format!("/v1/sessions/{id}/cancel"), app.key())
        .await;
    let waited = started.elapsed();
    assert_eq!(cancel.status(), 503);
    assert_eq!(cancel.headers()["retry-after"], "1");
    let body: Value = cancel.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error", "{body}");
    assert!(waited < std::time::Duration::from_secs(10), "{waited:?}");
    stalled.rollback().await;
    let cancel = app
        .post(&format!("/v1/sessions/{id}/cancel"), app.key())
        .await;
    assert_eq!(cancel.status(), 200);
    let body: Value = cancel.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");
}
