//! `GET /v1/sessions/{id}?wait=SECONDS`: a read that waits for a pending session to
//! change.

use crate::helpers::{assert_error, spawn_app, App};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use walleot_server::domain::payments::{self, Closing};
use walleot_server::domain::Clock;
use walleot_server::store::Transition;

/// Starts a waiting read in the background; it resolves to the answer and its status.
fn wait_in_background(app: &App, id: &str, wait: &str) -> tokio::task::JoinHandle<(u16, Value)> {
    let request = app
        .http
        .get(app.url(&format!("/v1/sessions/{id}?wait={wait}")))
        .bearer_auth(app.key());
    tokio::spawn(async move {
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        (status, response.json().await.expect("a JSON body"))
    })
}

#[tokio::test]
async fn a_waiting_read_answers_soon_after_the_payment() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let started = Instant::now();
    let waiting = wait_in_background(&app, &id, "30");
    // Let the read reach its wait first.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !waiting.is_finished(),
        "a pending session keeps the read waiting"
    );

    let paid_at = Instant::now();
    let pay = app
        .post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
        .await;
    assert_eq!(pay.status(), 200);
    let (status, body) = waiting.await.unwrap();
    let after_pay = paid_at.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "paid");
    assert!(
        after_pay < Duration::from_secs(1),
        "answered {after_pay:?} after the payment"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_waiting_read_answers_at_the_timeout_when_nothing_happens() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let started = Instant::now();
    let (status, body) = wait_in_background(&app, &id, "1").await.unwrap();
    let took = started.elapsed();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "pending");
    assert!(
        took >= Duration::from_millis(950) && took < Duration::from_secs(3),
        "took {took:?}"
    );
}

#[tokio::test]
async fn a_waiting_read_answers_when_the_session_expires_by_its_deadline() {
    let app = spawn_app().await;
    let session = app
        .create_session_with(
            app.key(),
            json!({"amount": 200, "currency": "usd", "expiresIn": 60}),
        )
        .await;
    let id = session["sessionId"].as_str().unwrap().to_string();
    let waiting = wait_in_background(&app, &id, "30");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let expired_at = Instant::now();
    app.server.clock.advance_ms(61_000);
    let (status, body) = waiting.await.unwrap();
    assert_eq!(status, 200);
    assert_eq!(body["status"], "expired");
    assert!(expired_at.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_change_made_by_another_process_is_seen_while_waiting() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let waiting = wait_in_background(&app, &id, "30");
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another process on the same database: its changes never reach this process's
    // notifications, only the database.
    let other = walleot_server::store::open(&app.server.database_url)
        .await
        .unwrap();
    let cancelled_at = Instant::now();
    let session = other.find_session(&id).await.unwrap().unwrap();
    let cancel = payments::plan_closing(&session, Closing::Cancel, app.server.clock.now_ms())
        .expect("a pending session can be cancelled");
    let done = other.apply_plan(&cancel).await.unwrap();
    assert!(matches!(done, Transition::Applied(_)));
    let (_, body) = waiting.await.unwrap();
    assert_eq!(body["status"], "cancelled");
    assert!(cancelled_at.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_closed_session_answers_a_waiting_read_at_once() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    app.post(&format!("/v1/sessions/{id}/cancel"), app.key())
        .await;
    let started = Instant::now();
    let (status, body) = wait_in_background(&app, &id, "60").await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("cancelled")));
    assert!(started.elapsed() < Duration::from_secs(1));
}

#[tokio::test]
async fn bad_waits_are_refused_naming_wait() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    for wait in [
        "-1",
        "61",
        "3600",
        "abc",
        "1.5",
        "",
        "+5",
        "1e1",
        "%205",
        "99999999999999999999999",
    ] {
        let response = app
            .get(&format!("/v1/sessions/{id}?wait={wait}"), app.key())
            .await;
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(message.starts_with("wait"), "{wait:?}: {message}");
    }
    for wait in ["0", "00"] {
        let response = app
            .get(&format!("/v1/sessions/{id}?wait={wait}"), app.key())
            .await;
        assert_eq!(response.status(), 200, "{wait:?}");
    }
}

#[tokio::test]
async fn a_shutdown_answers_waiting_reads_at_once_and_finishes_cleanly() {
    use walleot_server::startup::{Application, Config, Services};
    let dir = tempfile::tempdir().unwrap();
    let config = Config {
        listen: "127.0.0.1:0".into(),
        database_url: walleot_server::testing::test_database_url(dir.path()),
        ..Config::default()
    };
    let services = Services::open(&config.database_url, None).await.unwrap();
    let key = services.bootstrap(0).await.unwrap().unwrap();
    let clock = std::sync::Arc::new(walleot_server::domain::SystemClock);
    let app = Application::build(config, services, clock).await.unwrap();
    let base = format!("http://{}", app.local_addr());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = tokio::spawn(app.run_until(async {
        let _ = stopped.await;
    }));
    let http = reqwest::Client::new();
    let session: Value = http
        .post(format!("{base}/v1/sessions"))
        .bearer_auth(key.expose_secret())
        .json(&json!({"amount": 200, "currency": "usd"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = session["sessionId"].as_str().unwrap();
    let waiting = tokio::spawn(
        http.get(format!("{base}/v1/sessions/{id}?wait=60"))
            .bearer_auth(key.expose_secret())
            .send(),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped_at = Instant::now();
    stop.send(()).unwrap();
    let answer = waiting.await.unwrap().unwrap();
    assert_eq!(answer.status(), 200);
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["status"], "pending");
    tokio::time::timeout(Duration::from_secs(5), running)
        .await
        .expect("the service stops")
        .unwrap()
        .unwrap();
    assert!(stopped_at.elapsed() < Duration::from_secs(5));
    // It no longer accepts connections.
    assert!(http.get(format!("{base}/healthz")).send().await.is_err());
}

#[tokio::test]
async fn a_long_poll_outlasts_the_header_and_body_timeouts() {
    let app = crate::helpers::spawn_app_with(|c| {
        c.connections.header_timeout = Duration::from_secs(1);
        c.connections.body_timeout = Duration::from_secs(1);
    })
    .await;
    let id = app.create_session().await;
    let started = Instant::now();
    let (status, body) = wait_in_background(&app, &id, "3").await.unwrap();
    assert_eq!((status, body["status"].as_str()), (200, Some("pending")));
    assert!(started.elapsed() >= Duration::from_millis(2900));
}
