//! Webhooks: endpoints per merchant and mode, and every event posted to a real receiver
//! on loopback, signed, retried on its schedule (with the test clock) until it is taken,
//! under one id.

use crate::helpers::{assert_error, spawn_app_with, App};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use walleot_client::webhooks::verify_webhook;
use walleot_server::domain::Livemode;

/// How the receiver answers one delivery.
#[derive(Debug, Clone, Copy)]
enum Answer {
    Ok,
    Fail,
    /// Answers 200 only after the service stopped waiting.
    Hang,
}

#[derive(Debug, Clone)]
struct Delivery {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
}

#[derive(Default)]
struct Script {
    /// Answers to give in turn; then `otherwise`.
    next: VecDeque<Answer>,
    otherwise: Option<Answer>,
    received: Vec<Delivery>,
}

#[derive(Clone)]
struct Receiver {
    url: String,
    script: Arc<Mutex<Script>>,
}

impl Receiver {
    async fn start(answers: &[Answer], otherwise: Answer) -> Self {
        let script = Arc::new(Mutex::new(Script {
            next: answers.iter().copied().collect(),
            otherwise: Some(otherwise),
            received: Vec::new(),
        }));
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(script.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver { url, script }
    }

    fn received(&self) -> Vec<Delivery> {
        self.script.lock().unwrap().received.clone()
    }

    fn answer_from_now(&self, answer: Answer) {
        let mut script = self.script.lock().unwrap();
        script.next.clear();
        script.otherwise = Some(answer);
    }

    /// Waits until `n` deliveries came, moving the test clock by `step` meanwhile so that
    /// retries fall due.
    async fn wait_for(&self, app: &App, n: usize, step_ms: i64) -> Vec<Delivery> {
        for _ in 0..300 {
            let received = self.received();
            if received.len() >= n {
                return received;
            }
            app.server.clock.advance_ms(step_ms);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{n} deliveries expected, {} came", self.received().len());
    }
}

async fn receive(
    State(script): State<Arc<Mutex<Script>>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let answer = {
        let mut script = script.lock().unwrap();
        script.received.push(Delivery {
            id: header("webhook-id"),
            timestamp: header("webhook-timestamp"),
            signature: header("webhook-signature"),
            body: body.to_vec(),
        });
        let otherwise = script.otherwise.unwrap_or(Answer::Ok);
        script.next.pop_front().unwrap_or(otherwise)
    };
    match answer {
        Answer::Ok => StatusCode::NO_CONTENT,
        Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
        Answer::Hang => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            StatusCode::OK
        }
    }
}

/// A service that waits 1 s for a receiver and looks for work every 50 ms.
async fn spawn() -> App {
    spawn_app_with(|config| {
        config.webhooks.timeout = Duration::from_secs(1);
        config.webhooks.poll_every = Duration::from_millis(50);
    })
    .await
}

async fn add_endpoint(app: &App, key: &str, body: Value) -> Value {
    let response = app.post_json("/v1/webhook_endpoints", key, &body).await;
    assert_eq!(response.status(), 201, "adding {body}");
    response.json().await.unwrap()
}

fn verified(secret: &str, delivery: &Delivery) -> walleot_client::Event {
    verify_webhook(
        secret,
        &delivery.id,
        &delivery.timestamp,
        &delivery.signature,
        &delivery.body,
    )
    .unwrap_or_else(|e| panic!("delivery {delivery:?} does not verify: {e}"))
}

async fn events_of(app: &App) -> Vec<Value> {
    let page: Value = app
        .get("/v1/events?limit=100", app.key())
        .await
        .json()
        .await
        .unwrap();
    page["data"].as_array().unwrap().clone()
}

#[tokio::test]
async fn each_event_is_posted_signed_to_the_endpoints_that_take_its_type() {
    let app = spawn().await;
    let every = Receiver::start(&[], Answer::Ok).await;
    let paid_only = Receiver::start(&[], Answer::Ok).await;
    let all = add_endpoint(&app, app.key(), json!({"url": every.url})).await;
    let secret = all["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(all["events"], Value::Null);
    assert_eq!(all["status"], "enabled");
    assert_eq!(all["livemode"], false);
    let paid = add_endpoint(
        &app,
        app.key(),
        json!({"url": paid_only.url, "events": ["session.paid"]}),
    )
    .await;

    let session = app.create_session().await;
    app.post(
        &format!("/v1/test_helpers/sessions/{session}/pay"),
        app.key(),
    )
    .await;
    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    app.create_session_with(&other, json!({"amount": 5, "currency": "usd"}))
        .await;

    let received = every.wait_for(&app, 2, 0).await;
    let listed = events_of(&app).await;
    let mut posted = Vec::new();
    for delivery in &received {
        let event = verified(secret, delivery);
        assert_eq!(event.event_id, delivery.id);
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert!(
            listed.contains(&body),
            "{body} is not as GET /v1/events has it"
        );
        assert_eq!(body["data"]["sessionId"], session.as_str());
        posted.push(event.kind);
    }
    posted.sort();
    assert_eq!(posted, ["session.created", "session.paid"]);

    let only_paid = paid_only.wait_for(&app, 1, 0).await;
    let event = verified(paid["secret"].as_str().unwrap(), &only_paid[0]);
    assert_eq!(event.kind, "session.paid");
    // Signed with each endpoint's own secret.
    assert!(verify_webhook(
        secret,
        &only_paid[0].id,
        &only_paid[0].timestamp,
        &only_paid[0].signature,
        &only_paid[0].body
    )
    .is_err());

    // Nothing more: not the other merchant's event, no repeat.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(every.received().len(), 2);
    assert_eq!(paid_only.received().len(), 1);
}

#[tokio::test]
async fn a_failing_then_silent_receiver_gets_the_same_event_until_it_takes_it() {
    let app = spawn().await;
    let receiver = Receiver::start(&[Answer::Fail, Answer::Hang], Answer::Ok).await;
    let endpoint = add_endpoint(
        &app,
        app.key(),
        json!({"url": receiver.url, "events": ["session.created"]}),
    )
    .await;
    let session = app.create_session().await;

    let first = receiver.wait_for(&app, 1, 0).await;
    // The retry is 5 s later: it comes only when the clock gets there.
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(receiver.received().len(), 1, "retried before its time");
    let second = receiver.wait_for(&app, 2, 1_000).await;
    // The silent attempt times out after a second; the next is 5 minutes later.
    let third = receiver.wait_for(&app, 3, 60_000).await;
    assert_eq!(first.len(), 1);
    assert_eq!(second.len(), 2);
    let secret = endpoint["secret"].as_str().unwrap();
    for delivery in &third {
        let event = verified(secret, delivery);
        assert_eq!(event.data.session_id, Some(session.clone()));
        assert_eq!(delivery.id, third[0].id, "one id for one event");
    }

    // Taken: never sent again, however long one waits.
    for _ in 0..5 {
        app.server.clock.advance_ms(12 * 3_600_000);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.received().len(), 3);
    let read: Value = app
        .get(
            &format!(
                "/v1/webhook_endpoints/{}",
                endpoint["endpointId"].as_str().unwrap()
            ),
            app.key(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "enabled");
    assert_eq!(read["disabledReason"], Value::Null);
    assert!(read.get("secret").is_none(), "the secret is shown once");
}

#[tokio::test]
async fn an_endpoint_failing_for_days_is_disabled_and_catches_up_once_enabled() {
    let app = spawn().await;
    let receiver = Receiver::start(&[], Answer::Fail).await;
    let endpoint = add_endpoint(
        &app,
        app.key(),
        json!({"url": receiver.url, "events": ["session.created"]}),
    )
    .await;
    let id = endpoint["endpointId"].as_str().unwrap();
    // Another endpoint that answers, so that events go on being handed out meanwhile.
    let healthy = Receiver::start(&[], Answer::Ok).await;
    add_endpoint(
        &app,
        app.key(),
        json!({"url": healthy.url, "events": ["session.created"]}),
    )
    .await;
    app.create_session().await;
    receiver.wait_for(&app, 1, 0).await;

    // Every retry of eight fails, over more than a day; the endpoint stays enabled.
    receiver.wait_for(&app, 8, 3_600_000).await;
    let read: Value = app
        .get(&format!("/v1/webhook_endpoints/{id}"), app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "enabled");

    // Five days after the first failure, one more failure disables it.
    app.server.clock.advance_ms(5 * 24 * 3_600_000);
    let late = app.create_session().await;
    let mut read = Value::Null;
    for _ in 0..100 {
        read = app
            .get(&format!("/v1/webhook_endpoints/{id}"), app.key())
            .await
            .json()
            .await
            .unwrap();
        if read["status"] == "disabled" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(read["status"], "disabled");
    let reason = read["disabledReason"].as_str().unwrap();
    assert!(reason.contains("500"), "{reason}");
    let attempts = receiver.received().len();

    // While disabled, nothing is posted; what happens meanwhile is kept (and goes to
    // the other endpoint).
    let meanwhile = app.create_session().await;
    healthy.wait_for(&app, 3, 0).await;
    for _ in 0..5 {
        app.server.clock.advance_ms(3_600_000);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(receiver.received().len(), attempts);

    receiver.answer_from_now(Answer::Ok);
    let enabled = app
        .post(&format!("/v1/webhook_endpoints/{id}/enable"), app.key())
        .await;
    assert_eq!(enabled.status(), 200);
    let enabled: Value = enabled.json().await.unwrap();
    assert_eq!(enabled["status"], "enabled");
    assert_eq!(enabled["disabledReason"], Value::Null);
    let received = receiver.wait_for(&app, attempts + 2, 60_000).await;
    let sessions: Vec<String> = received[attempts..]
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_slice(&d.body).unwrap();
            body["data"]["sessionId"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(sessions.contains(&late), "{sessions:?}");
    assert!(sessions.contains(&meanwhile), "{sessions:?}");
}

#[tokio::test]
async fn an_event_can_be_sent_again_under_its_id_to_its_merchant_only() {
    let app = spawn().await;
    let receiver = Receiver::start(&[], Answer::Ok).await;
    let endpoint = add_endpoint(&app, app.key(), json!({"url": receiver.url})).await;
    app.create_session().await;
    let first = receiver.wait_for(&app, 1, 0).await;
    let event_id = first[0].id.clone();

    let again = app
        .post(&format!("/v1/events/{event_id}/redeliver"), app.key())
        .await;
    assert_eq!(again.status(), 202);
    let again: Value = again.json().await.unwrap();
    assert_eq!(again["eventId"], event_id.as_str());
    assert_eq!(again["endpointIds"], json!([endpoint["endpointId"]]));
    let received = receiver.wait_for(&app, 2, 0).await;
    assert_eq!(received[1].id, event_id);
    verified(endpoint["secret"].as_str().unwrap(), &received[1]);

    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    let path = format!("/v1/events/{event_id}/redeliver");
    assert_error(app.post(&path, &other).await, 404, "not_found").await;
    assert_error(
        app.post(&path, &app.server.live_key).await,
        404,
        "not_found",
    )
    .await;
    for unknown in [
        "evt_000000000000000000000000",
        "nope",
        "sess_000000000000000000000000",
    ] {
        let path = format!("/v1/events/{unknown}/redeliver");
        assert_error(app.post(&path, app.key()).await, 404, "not_found").await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(receiver.received().len(), 2);
}

#[tokio::test]
async fn endpoints_belong_to_one_merchant_and_mode_and_a_deleted_one_gets_nothing() {
    let app = spawn().await;
    let receiver = Receiver::start(&[], Answer::Ok).await;
    let endpoint = add_endpoint(&app, app.key(), json!({"url": receiver.url})).await;
    let id = endpoint["endpointId"].as_str().unwrap();
    assert!(id.starts_with("we_"));

    let list: Value = app
        .get("/v1/webhook_endpoints", app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert_eq!(list["data"][0]["endpointId"], id);
    assert!(list["data"][0].get("secret").is_none());

    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    let path = format!("/v1/webhook_endpoints/{id}");
    for key in [other.as_str(), app.server.live_key.as_str()] {
        let list: Value = app
            .get("/v1/webhook_endpoints", key)
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(list["data"], json!([]));
        assert_error(app.get(&path, key).await, 404, "not_found").await;
        let delete = app
            .request(reqwest::Method::DELETE, &path, Some(key), None)
            .await;
        assert_error(delete, 404, "not_found").await;
    }

    let deleted = app
        .request(reqwest::Method::DELETE, &path, Some(app.key()), None)
        .await;
    assert_eq!(deleted.status(), 200);
    let deleted: Value = deleted.json().await.unwrap();
    assert_eq!(deleted["status"], "deleted");
    assert_error(app.get(&path, app.key()).await, 404, "not_found").await;
    let again = app
        .request(reqwest::Method::DELETE, &path, Some(app.key()), None)
        .await;
    assert_error(again, 404, "not_found").await;
    app.create_session().await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(receiver.received().is_empty());

    // At most 16 per mode; a deleted one does not count.
    for _ in 0..16 {
        add_endpoint(&app, app.key(), json!({"url": receiver.url})).await;
    }
    let over = app
        .post_json(
            "/v1/webhook_endpoints",
            app.key(),
            &json!({"url": receiver.url}),
        )
        .await;
    assert_error(over, 409, "conflict").await;
}

#[tokio::test]
async fn bad_endpoints_are_refused_with_the_field_named() {
    let app = spawn().await;
    let test = app.key().to_string();
    let live = app.server.live_key.clone();
    let refused = [
        (&test, json!({})),
        (&test, json!({"url": "not a url"})),
        (&test, json!({"url": "ftp://example.com/hook"})),
        (&test, json!({"url": "http://example.com/hook#frag"})),
        (
            &test,
            json!({"url": format!("http://example.com/{}", "a".repeat(2048))}),
        ),
        (
            &test,
            json!({"url": "http://example.com/hook", "events": []}),
        ),
        (
            &test,
            json!({"url": "http://example.com/hook", "events": ["session.exploded"]}),
        ),
        (
            &test,
            json!({"url": "http://example.com/hook", "secret": "mine"}),
        ),
        (&test, json!({"url": 42})),
        (&live, json!({"url": "http://93.184.215.14/hook"})),
        (&live, json!({"url": "https://127.0.0.1/hook"})),
        (&live, json!({"url": "https://[::1]/hook"})),
        (
            &live,
            json!({"url": "https://169.254.169.254/latest/meta-data"}),
        ),
        (&live, json!({"url": "https://10.0.0.8/hook"})),
        (&live, json!({"url": "https://localhost:8443/hook"})),
        (
            &test,
            json!({"url": "http://169.254.169.254/latest/meta-data"}),
        ),
        (&test, json!({"url": "http://[fe80::1]/hook"})),
    ];
    for (key, body) in refused {
        let response = app.post_json("/v1/webhook_endpoints", key, &body).await;
        assert_error(response, 400, "invalid_request").await;
    }
    let message = assert_error(
        app.post_json(
            "/v1/webhook_endpoints",
            &live,
            &json!({"url": "https://127.0.0.1/hook"}),
        )
        .await,
        400,
        "invalid_request",
    )
    .await;
    assert!(message.contains("private"), "{message}");

    // Test mode takes loopback; live mode a public https address.
    add_endpoint(&app, &test, json!({"url": "http://127.0.0.1:9/hook"})).await;
    let public = add_endpoint(&app, &live, json!({"url": "https://93.184.215.14/hook"})).await;
    assert_eq!(public["livemode"], true);
}

#[tokio::test]
async fn the_operator_may_allow_private_live_endpoints() {
    let app = spawn_app_with(|config| config.webhooks.allow_private_urls = true).await;
    let live = app.server.live_key.clone();
    add_endpoint(&app, &live, json!({"url": "https://127.0.0.1/hook"})).await;
    let plain = app
        .post_json(
            "/v1/webhook_endpoints",
            &live,
            &json!({"url": "http://127.0.0.1/hook"}),
        )
        .await;
    assert_error(plain, 400, "invalid_request").await;
}

#[tokio::test]
async fn two_instances_deliver_each_attempt_once_between_them() {
    let one = spawn().await;
    let url = one.server.database_url.clone();
    let two = spawn_app_with(|config| {
        config.database_url = url;
        config.webhooks.timeout = Duration::from_secs(1);
        config.webhooks.poll_every = Duration::from_millis(50);
    })
    .await;
    let receiver = Receiver::start(&[], Answer::Fail).await;
    add_endpoint(
        &one,
        one.key(),
        json!({"url": receiver.url, "events": ["session.created"]}),
    )
    .await;
    let mut created = Vec::new();
    for i in 0..30 {
        let app = if i % 2 == 0 { &one } else { &two };
        created.push(app.create_session().await);
    }
    created.sort();
    receiver.wait_for(&one, 30, 0).await;
    // Every retry falls due on both instances at once; they share them out.
    receiver.answer_from_now(Answer::Ok);
    two.server.clock.advance_ms(5_000);
    receiver.wait_for(&one, 60, 5_000).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = receiver.received();
    let mut sessions: Vec<String> = received
        .iter()
        .map(|d| {
            let body: Value = serde_json::from_slice(&d.body).unwrap();
            body["data"]["sessionId"].as_str().unwrap().to_string()
        })
        .collect();
    sessions.sort();
    let twice: Vec<String> = created
        .iter()
        .flat_map(|s| [s.clone(), s.clone()])
        .collect();
    assert_eq!(sessions, twice, "each event failed once and was taken once");
}

#[tokio::test]
async fn mandate_changes_are_events_listed_and_posted() {
    use walleot_server::domain::mandates::{Grant, MandateLimits};
    let app = spawn().await;
    let receiver = Receiver::start(&[], Answer::Ok).await;
    let endpoint = add_endpoint(
        &app,
        app.key(),
        json!({"url": receiver.url,
               "events": ["mandate.granted", "mandate.revoked", "mandate.expired"]}),
    )
    .await;
    let grant = |customer: &'static str| {
        let app = &app;
        async move {
            let first = app
                .create_session_with(
                    app.key(),
                    json!({"amount": 25, "currency": "usd", "customer": customer}),
                )
                .await;
            let id = first["sessionId"].as_str().unwrap().to_string();
            let payer = app.pay_as_new_payer(&id).await;
            let limits = MandateLimits::new(Some(50), None, None).unwrap();
            let grant = Grant {
                payer_id: payer.clone(),
                session_id: id,
                limits,
                expires_at: None,
            };
            (payer, app.server.mandates().grant(grant).await.unwrap().id)
        }
    };
    let (payer, revoked) = grant("agent-r").await;
    let (_, expiring) = grant("agent-x").await;
    app.server
        .mandates()
        .revoke(&payer, &revoked)
        .await
        .unwrap();
    app.server.clock.advance_ms(31 * 24 * 3_600_000);
    assert_eq!(app.server.mandates().record_expiries(500).await.unwrap(), 1);

    let received = receiver.wait_for(&app, 4, 0).await;
    let secret = endpoint["secret"].as_str().unwrap();
    let mut posted: Vec<(String, String, Option<String>, String)> = received
        .iter()
        .map(|d| {
            let event = verified(secret, d);
            assert_eq!(event.data.session_id, None);
            (
                event.data.mandate_id.unwrap(),
                event.kind,
                event.data.previous_status,
                event.data.status,
            )
        })
        .collect();
    posted.sort();
    let mut expected = vec![
        (
            revoked.clone(),
            "mandate.granted".to_string(),
            None,
            "active".to_string(),
        ),
        (
            revoked.clone(),
            "mandate.revoked".into(),
            Some("active".into()),
            "revoked".into(),
        ),
        (
            expiring.clone(),
            "mandate.granted".into(),
            None,
            "active".into(),
        ),
        (
            expiring.clone(),
            "mandate.expired".into(),
            Some("active".into()),
            "expired".into(),
        ),
    ];
    expected.sort();
    assert_eq!(posted, expected);

    // The list has them among the sessions' events, each as it was posted.
    let listed = events_of(&app).await;
    for delivery in &received {
        let body: Value = serde_json::from_slice(&delivery.body).unwrap();
        assert!(listed.contains(&body), "{body} is not listed");
        assert!(body["data"].get("sessionId").is_none(), "{body}");
    }
    assert!(listed.iter().any(|e| e["type"] == "session.paid"));
    // Paged one at a time, every event comes once, newest first.
    let mut paged = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = app
            .get(&format!("/v1/events?limit=1&cursor={cursor}"), app.key())
            .await
            .json()
            .await
            .unwrap();
        paged.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["nextCursor"].as_str() {
            Some(next) => cursor = next.to_string(),
            None => break,
        }
    }
    assert_eq!(paged, listed);
    let redelivered = app
        .post(
            &format!("/v1/events/{}/redeliver", received[0].id),
            app.key(),
        )
        .await;
    assert_eq!(redelivered.status(), 202);
    let again = receiver.wait_for(&app, 5, 0).await;
    assert_eq!(again[4].id, received[0].id);
    assert_eq!(again[4].body, received[0].body);
}

#[tokio::test]
async fn a_merchant_whose_receiver_fails_does_not_hold_up_the_others() {
    let app = spawn_app_with(|config| {
        config.webhooks.timeout = Duration::from_secs(1);
        config.webhooks.poll_every = Duration::from_millis(50);
        config.limits.sessions_per_window = 1_000;
    })
    .await;
    let silent = Receiver::start(&[], Answer::Hang).await;
    add_endpoint(
        &app,
        app.key(),
        json!({"url": silent.url, "events": ["session.created"]}),
    )
    .await;
    // A backlog of first attempts that each take the whole second of the timeout:
    // several seconds of work for the worker.
    for _ in 0..200 {
        app.create_session().await;
    }
    silent.wait_for(&app, 33, 0).await;
    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    let answering = Receiver::start(&[], Answer::Ok).await;
    add_endpoint(&app, &other, json!({"url": answering.url})).await;
    let started = std::time::Instant::now();
    app.create_session_with(&other, json!({"amount": 5, "currency": "usd"}))
        .await;
    answering.wait_for(&app, 1, 0).await;
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_millis(2_500),
        "the other merchant's event waited {waited:?} behind the failing endpoint"
    );
    assert!(
        silent.received().len() < 200,
        "the backlog was not ahead of it"
    );
}
