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
