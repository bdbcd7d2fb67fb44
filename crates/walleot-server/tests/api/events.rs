//! `GET /v1/events`: every change of the merchant's sessions, newest first, in cursor
//! pages, and nothing of another merchant or mode.

use crate::helpers::{assert_error, spawn_app};
use serde_json::{json, Value};
use walleot_server::domain::Livemode;

#[tokio::test]
async fn every_change_is_listed_newest_first_in_pages() {
    let app = spawn_app().await;
    let paid = app.create_session().await;
    app.post(&format!("/v1/test_helpers/sessions/{paid}/pay"), app.key())
        .await;
    let refunded = app
        .post_json(
            &format!("/v1/sessions/{paid}/refunds"),
            app.key(),
            &json!({"amount": 10}),
        )
        .await;
    assert_eq!(refunded.status(), 200);
    let cancelled = app.create_session().await;
    app.post(&format!("/v1/sessions/{cancelled}/cancel"), app.key())
        .await;
    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    app.create_session_with(&other, json!({"amount": 5, "currency": "usd"}))
        .await;

    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(&format!("/v1/events?limit=2&cursor={cursor}"), app.key())
            .await
            .json()
            .await
            .unwrap();
        for event in page["data"].as_array().unwrap() {
            assert!(event["eventId"].as_str().unwrap().starts_with("evt_"));
            assert_eq!(event["livemode"], false);
            seen.push((
                event["type"].as_str().unwrap().to_string(),
                event["data"]["sessionId"].as_str().unwrap().to_string(),
                event["data"]["previousStatus"].clone(),
                event["data"]["status"].as_str().unwrap().to_string(),
            ));
        }
        match page["nextCursor"].as_str() {
            Some(next) => {
                assert_eq!(page["hasMore"], true);
                cursor = next.to_string();
            }
            None => break,
        }
    }
    let expected = [
        (
            "session.cancelled",
            &cancelled,
            json!("pending"),
            "cancelled",
        ),
        ("session.created", &cancelled, Value::Null, "pending"),
        ("session.refunded", &paid, json!("paid"), "paid"),
        ("session.paid", &paid, json!("pending"), "paid"),
        ("session.created", &paid, Value::Null, "pending"),
    ]
    .map(|(kind, id, from, to)| (kind.to_string(), id.clone(), from, to.to_string()));
    assert_eq!(seen, expected);

    // The other merchant sees only its own; a live key sees no test events.
    let theirs: Value = app.get("/v1/events", &other).await.json().await.unwrap();
    assert_eq!(theirs["data"].as_array().unwrap().len(), 1);
    let none: Value = app
        .get("/v1/events", &app.server.live_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(none["data"], json!([]));
    assert_eq!(none["hasMore"], false);
}

#[tokio::test]
async fn bad_pages_get_clear_errors() {
    let app = spawn_app().await;
    let session = app.create_session().await;
    let mine: Value = app.get("/v1/events", app.key()).await.json().await.unwrap();
    let my_event = mine["data"][0]["eventId"].as_str().unwrap().to_string();
    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    assert_error(
        app.get(&format!("/v1/events?cursor={my_event}"), &other)
            .await,
        404,
        "not_found",
    )
    .await;
    for query in [
        "?limit=0",
        "?limit=101",
        &format!("?cursor={session}"),
        "?colour=red",
    ] {
        assert_error(
            app.get(&format!("/v1/events{query}"), app.key()).await,
            400,
            "invalid_request",
        )
        .await;
    }
}
