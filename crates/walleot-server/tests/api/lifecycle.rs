use crate::helpers::{assert_error, spawn_app, spawn_app_with};
use serde_json::{json, Value};
use std::time::Duration;
use walleot_api::SessionStatus;

#[tokio::test]
async fn test_helpers_move_a_session_to_each_outcome() {
    let app = spawn_app().await;
    for (helper, status) in [("pay", "paid"), ("fail", "failed"), ("expire", "expired")] {
        let id = app.create_session().await;
        let response = app
            .post(
                &format!("/v1/test_helpers/sessions/{id}/{helper}"),
                app.key(),
            )
            .await;
        assert_eq!(response.status(), 200, "{helper}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["status"], status);
        assert_eq!(app.status_of(&id).await, status);
        let events = app.server.services.store.session_events(&id).await.unwrap();
        let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
        assert_eq!(kinds, ["session.created", &format!("session.{status}")]);
    }
}

#[tokio::test]
async fn a_pending_session_can_be_cancelled_once() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let response = app
        .post(&format!("/v1/sessions/{id}/cancel"), app.key())
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap()["status"],
        "cancelled"
    );
    // Asking again changes nothing and records nothing.
    let again = app
        .post(&format!("/v1/sessions/{id}/cancel"), app.key())
        .await;
    assert_eq!(again.status(), 200);
    let events = app.server.services.store.session_events(&id).await.unwrap();
    assert_eq!(events.len(), 2);
    // A cancelled session cannot be paid.
    let pay = app
        .post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
        .await;
    let message = assert_error(pay, 409, "conflict").await;
    assert!(message.contains("cancelled"), "{message}");
}

#[tokio::test]
async fn final_states_do_not_change() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    app.post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
        .await;
    for path in [
        "sessions/{id}/cancel",
        "test_helpers/sessions/{id}/fail",
        "test_helpers/sessions/{id}/expire",
    ] {
        let path = format!("/v1/{}", path.replace("{id}", &id));
        assert_error(app.post(&path, app.key()).await, 409, "conflict").await;
    }
    assert_eq!(app.status_of(&id).await, "paid");
}

#[tokio::test]
async fn test_helpers_refuse_live_keys() {
    let app = spawn_app().await;
    let live: Value = app
        .create_session_with(
            &app.server.live_key,
            json!({"amount": 200, "currency": "usd"}),
        )
        .await;
    let id = live["sessionId"].as_str().unwrap();
    for helper in ["pay", "fail", "expire"] {
        let response = app
            .post(
                &format!("/v1/test_helpers/sessions/{id}/{helper}"),
                &app.server.live_key,
            )
            .await;
        assert_error(response, 403, "forbidden").await;
    }
    let read: Value = app
        .get(&format!("/v1/sessions/{id}"), &app.server.live_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "pending");
}

#[tokio::test]
async fn expired_sessions_read_expired_without_a_sweeper() {
    let app = spawn_app().await;
    let body = app
        .create_session_with(
            app.key(),
            json!({"amount": 200, "currency": "usd", "expiresIn": 60}),
        )
        .await;
    let id = body["sessionId"].as_str().unwrap();
    app.server.clock.advance_ms(59_000);
    assert_eq!(app.status_of(id).await, "pending");
    app.server.clock.advance_ms(1_000);
    assert_eq!(app.status_of(id).await, "expired");
    let pay = app
        .post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
        .await;
    assert_error(pay, 409, "conflict").await;
    let events = app.server.services.store.session_events(id).await.unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, ["session.created", "session.expired"]);
}

#[tokio::test]
async fn an_expired_session_cannot_be_paid_even_before_anyone_reads_it() {
    let app = spawn_app().await;
    let body = app
        .create_session_with(
            app.key(),
            json!({"amount": 200, "currency": "usd", "expiresIn": 60}),
        )
        .await;
    let id = body["sessionId"].as_str().unwrap();
    app.server.clock.advance_ms(61_000);
    let pay = app
        .post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
        .await;
    let message = assert_error(pay, 409, "conflict").await;
    assert!(message.contains("expired"), "{message}");
    assert_eq!(app.status_of(id).await, "expired");
}

#[tokio::test]
async fn the_sweeper_records_expiry_of_sessions_nobody_reads() {
    let app = spawn_app_with(|c| c.sweep_every = Duration::from_millis(20)).await;
    let body = app
        .create_session_with(
            app.key(),
            json!({"amount": 200, "currency": "usd", "expiresIn": 60}),
        )
        .await;
    let id = body["sessionId"].as_str().unwrap().to_string();
    let fresh = app.create_session().await;
    app.server.clock.advance_ms(120_000);
    let store = &app.server.services.store;
    let mut stored = SessionStatus::Pending;
    for _ in 0..250 {
        let session = store
            .get_session(&app.server.merchant_id, false, &id)
            .await
            .unwrap()
            .unwrap();
        stored = session.status;
        if stored == SessionStatus::Expired {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        stored,
        SessionStatus::Expired,
        "the sweeper wrote the expiry"
    );
    let events = store.session_events(&id).await.unwrap();
    assert_eq!(events.last().unwrap().kind, "session.expired");
    assert_eq!(
        app.status_of(&fresh).await,
        "pending",
        "a session with time left stays pending"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_racing_cancel_and_payment_leave_exactly_one_outcome() {
    let app = std::sync::Arc::new(spawn_app().await);
    for _ in 0..15 {
        let id = app.create_session().await;
        let (cancel, pay) = tokio::join!(
            {
                let app = app.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    app.post(&format!("/v1/sessions/{id}/cancel"), app.key())
                        .await
                        .status()
                        .as_u16()
                })
            },
            {
                let app = app.clone();
                let id = id.clone();
                tokio::spawn(async move {
                    app.post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
                        .await
                        .status()
                        .as_u16()
                })
            }
        );
        let (cancel, pay) = (cancel.unwrap(), pay.unwrap());
        let status = app.status_of(&id).await;
        match (cancel, pay) {
            (200, 409) => assert_eq!(status, "cancelled"),
            (409, 200) => assert_eq!(status, "paid"),
            other => panic!("both or neither won: {other:?}"),
        }
        let events = app.server.services.store.session_events(&id).await.unwrap();
        assert_eq!(events.len(), 2, "one change recorded: {events:?}");
    }
}

#[tokio::test]
async fn the_event_record_is_append_only() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let update = app
        .server
        .execute_sql(&format!(
            "UPDATE session_events SET type = 'forged' WHERE session_id = '{id}'"
        ))
        .await;
    assert!(update.unwrap_err().contains("append-only"));
    let delete = app.server.execute_sql("DELETE FROM session_events").await;
    assert!(delete.unwrap_err().contains("append-only"));
}
