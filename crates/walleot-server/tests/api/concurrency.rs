//! Many test-helper payments at once on different sessions of one merchant.

use crate::helpers::spawn_app_with;
use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sandbox_payments_on_different_sessions_all_succeed() {
    let app = spawn_app_with(|c| {
        c.limits.sessions_per_window = 10_000;
        c.limits.status_per_window = 10_000;
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..250 {
        let session = app
            .create_session_with(app.key(), json!({"amount": 100, "currency": "usd"}))
            .await;
        ids.push(session["sessionId"].as_str().unwrap().to_string());
    }
    let pay = |id: String| {
        let app = &app;
        async move {
            let response = app
                .http
                .post(app.url(&format!("/v1/test_helpers/sessions/{id}/pay")))
                .bearer_auth(app.key())
                .header("Idempotency-Key", format!("pay-{id}"))
                .send()
                .await
                .expect("the service answers");
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (id, status, body)
        }
    };
    let answers: Vec<_> = stream::iter(ids.clone())
        .map(pay)
        .buffer_unordered(50)
        .collect()
        .await;
    let failed: Vec<_> = answers.iter().filter(|(_, s, _)| *s != 200).collect();

    // A retry under the same key replays a payment, and runs again one that failed in
    // a way worth retrying: such a failure is not kept as the key's answer.
    for (id, _, _) in &answers {
        let (_, status, body) = pay(id.clone()).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (200, Some("paid")),
            "retrying {id}: {body}"
        );
    }
    assert!(
        failed.is_empty(),
        "{} of 250 payments failed at first, e.g. {:?}",
        failed.len(),
        failed.first()
    );
    for id in &ids {
        assert_eq!(app.server.transfers_of(id).await, 1, "{id}");
    }
    let problems = app.server.wallets().verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "ledger problems: {problems:?}");
}

/// The sandbox payer's wallet covers each payment by what it lacks, measured as the
/// payment is written: with funds already in the wallet (a released hold), payments at
/// once never count the same funds twice, so none is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_sandbox_payments_share_a_wallet_in_funds_without_refusals() {
    let app = spawn_app_with(|c| {
        c.limits.sessions_per_window = 10_000;
        c.limits.status_per_window = 10_000;
    })
    .await;
    let held = app
        .create_session_with(
            app.key(),
            json!({"amount": 100, "currency": "usd", "captureMethod": "manual"}),
        )
        .await;
    let held = held["sessionId"].as_str().unwrap();
    for path in ["test_helpers/sessions/{id}/pay", "sessions/{id}/release"] {
        let response = app
            .post(&format!("/v1/{}", path.replace("{id}", held)), app.key())
            .await;
        assert_eq!(response.status(), 200, "{path}");
    }
    for round in 0..5 {
        let mut ids = Vec::new();
        for _ in 0..8 {
            let session = app
                .create_session_with(app.key(), json!({"amount": 100, "currency": "usd"}))
                .await;
            ids.push(session["sessionId"].as_str().unwrap().to_string());
        }
        let paths: Vec<String> = ids
            .iter()
            .map(|id| format!("/v1/test_helpers/sessions/{id}/pay"))
            .collect();
        let answers =
            futures::future::join_all(paths.iter().map(|path| app.post(path, app.key()))).await;
        for answer in answers {
            let status = answer.status();
            let body: Value = answer.json().await.unwrap();
            assert_eq!(status, 200, "round {round}: {body}");
        }
    }
    let problems = app.server.wallets().verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "ledger problems: {problems:?}");
}
