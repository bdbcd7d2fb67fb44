use crate::helpers::{assert_error, spawn_app, spawn_app_with};
use serde_json::{json, Value};
use walleot_server::domain::payments;

/// A manual-capture session of `amount`, approved by a payer with sandbox credits.
async fn held(app: &crate::helpers::App, amount: i64) -> (String, String) {
    let session = app
        .create_session_with(
            app.key(),
            json!({"amount": amount, "currency": "usd", "captureMethod": "manual"}),
        )
        .await;
    assert_eq!(session["captureMethod"], "manual");
    assert!(session["captureStatus"].is_null());
    let id = session["sessionId"].as_str().unwrap().to_string();
    let payer = app.pay_as_new_payer(&id).await;
    (id, payer)
}

async fn balances(app: &crate::helpers::App, payer: &str) -> (i64, i64, i64) {
    let wallets = app.server.wallets();
    let wallet = wallets.balances(payer).await.unwrap()[0].clone();
    let merchant = wallets
        .merchant_accounts(&app.server.merchant_id, false)
        .await
        .unwrap()[0]
        .clone();
    (
        wallet.available(),
        merchant.balance(),
        merchant.credits_pending,
    )
}

#[tokio::test]
async fn approved_funds_are_held_then_captured_once() {
    let app = spawn_app().await;
    let (id, payer) = held(&app, 300).await;
    let session = app.read(&id).await;
    assert_eq!(
        (
            session["status"].as_str(),
            session["captureStatus"].as_str()
        ),
        (Some("paid"), Some("held"))
    );
    assert_eq!(
        balances(&app, &payer).await,
        (700, 0, 300),
        "held: out of the wallet, not yet the merchant's"
    );

    let captured = app
        .post(&format!("/v1/sessions/{id}/capture"), app.key())
        .await;
    assert_eq!(captured.status(), 200);
    let captured: Value = captured.json().await.unwrap();
    assert_eq!(
        (
            captured["status"].as_str(),
            captured["captureStatus"].as_str()
        ),
        (Some("paid"), Some("captured"))
    );
    assert_eq!(balances(&app, &payer).await, (700, 300, 0));

    // Capturing again changes nothing; releasing after capture is refused.
    assert_eq!(
        app.post(&format!("/v1/sessions/{id}/capture"), app.key())
            .await
            .status(),
        200
    );
    assert_error(
        app.post(&format!("/v1/sessions/{id}/release"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(balances(&app, &payer).await, (700, 300, 0));
    let kinds: Vec<_> = app
        .server
        .services
        .store
        .session_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["session.created", "session.paid", "session.captured"]
    );
    assert!(app
        .server
        .wallets()
        .verify_ledger()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn released_funds_return_to_the_payer_and_the_session_reads_cancelled() {
    let app = spawn_app().await;
    let (id, payer) = held(&app, 300).await;
    let released: Value = app
        .post(&format!("/v1/sessions/{id}/release"), app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (
            released["status"].as_str(),
            released["captureStatus"].as_str()
        ),
        (Some("cancelled"), Some("released"))
    );
    assert_eq!(balances(&app, &payer).await, (1000, 0, 0));
    assert_error(
        app.post(&format!("/v1/sessions/{id}/capture"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
    assert_eq!(
        app.post(&format!("/v1/sessions/{id}/release"), app.key())
            .await
            .status(),
        200
    );
    assert!(app
        .server
        .wallets()
        .verify_ledger()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_hold_that_is_never_captured_lapses_back_to_the_payer() {
    let app = spawn_app().await;
    let (id, payer) = held(&app, 300).await;
    app.server.clock.advance_ms(24 * 3600 * 1000);
    let store = &app.server.services.store;
    use walleot_server::domain::Clock;
    assert_eq!(
        payments::lapse_due(&**store, app.server.clock.now_ms(), 10)
            .await
            .unwrap(),
        1
    );
    let session = app.read(&id).await;
    assert_eq!(
        (
            session["status"].as_str(),
            session["captureStatus"].as_str()
        ),
        (Some("expired"), Some("released"))
    );
    assert_eq!(balances(&app, &payer).await, (1000, 0, 0));
    assert_error(
        app.post(&format!("/v1/sessions/{id}/capture"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
}

#[tokio::test]
async fn only_held_funds_can_be_captured_or_released() {
    let app = spawn_app().await;
    let automatic = app.create_session().await;
    app.post(
        &format!("/v1/test_helpers/sessions/{automatic}/pay"),
        app.key(),
    )
    .await;
    let message = assert_error(
        app.post(&format!("/v1/sessions/{automatic}/capture"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
    assert!(message.contains("automatic"), "{message}");
    let pending = app
        .create_session_with(
            app.key(),
            json!({"amount": 5, "currency": "usd", "captureMethod": "manual"}),
        )
        .await["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    assert_error(
        app.post(&format!("/v1/sessions/{pending}/release"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
    assert_error(
        app.post(
            "/v1/sessions/sess_000000000000000000000000/capture",
            app.key(),
        )
        .await,
        404,
        "not_found",
    )
    .await;
    let other = app
        .server
        .other_merchant_key("Other", walleot_server::domain::Livemode::Test)
        .await;
    let (id, _) = held(&app, 50).await;
    assert_error(
        app.post(&format!("/v1/sessions/{id}/capture"), &other)
            .await,
        404,
        "not_found",
    )
    .await;
    let bad = app
        .post_json(
            "/v1/sessions",
            app.key(),
            &json!({"amount": 5, "currency": "usd", "captureMethod": "later"}),
        )
        .await;
    let message = assert_error(bad, 400, "invalid_request").await;
    assert!(message.contains("captureMethod"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_racing_capture_and_release_settle_once() {
    let app = std::sync::Arc::new(spawn_app().await);
    for _ in 0..10 {
        let (id, payer) = held(&app, 100).await;
        let capture = {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move {
                app.post(&format!("/v1/sessions/{id}/capture"), app.key())
                    .await
                    .status()
                    .as_u16()
            })
        };
        let release = {
            let (app, id) = (app.clone(), id.clone());
            tokio::spawn(async move {
                app.post(&format!("/v1/sessions/{id}/release"), app.key())
                    .await
                    .status()
                    .as_u16()
            })
        };
        let outcome = (capture.await.unwrap(), release.await.unwrap());
        let session = app.read(&id).await;
        match outcome {
            (200, 409) => assert_eq!(session["captureStatus"], "captured"),
            (409, 200) => assert_eq!(session["captureStatus"], "released"),
            other => panic!("{other:?}"),
        }
        let (wallet, _, _) = balances(&app, &payer).await;
        assert!(wallet == 900 || wallet == 1000);
    }
    assert!(app
        .server
        .wallets()
        .verify_ledger()
        .await
        .unwrap()
        .is_empty());
}

/// A manual-capture session paid by the sandbox payer, on a service whose holds last
/// three seconds and whose sweeper waits an hour.
async fn held_briefly() -> (crate::helpers::App, String, String) {
    let app = spawn_app_with(|c| c.wallets.hold_ms = 3_000).await;
    let session = app
        .create_session_with(
            app.key(),
            json!({"amount": 300, "currency": "usd", "captureMethod": "manual"}),
        )
        .await;
    let id = session["sessionId"].as_str().unwrap().to_string();
    let paid = app
        .post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
        .await;
    assert_eq!(paid.status(), 200);
    let payer = format!("payer_sandbox_{}", app.server.merchant_id);
    assert_eq!(balances(&app, &payer).await, (0, 0, 300));
    (app, id, payer)
}

#[tokio::test]
async fn a_capture_after_the_hold_deadline_is_refused_without_waiting_for_the_sweeper() {
    let (app, id, payer) = held_briefly().await;
    app.server.clock.advance_ms(3_001);
    let message = assert_error(
        app.post(&format!("/v1/sessions/{id}/capture"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
    assert!(message.contains("deadline"), "{message}");
    let session = app.read(&id).await;
    assert_eq!(
        (
            session["status"].as_str(),
            session["captureStatus"].as_str()
        ),
        (Some("expired"), Some("released"))
    );
    assert_eq!(balances(&app, &payer).await, (300, 0, 0));
    let kinds: Vec<_> = app
        .server
        .services
        .store
        .session_events(&id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(
        kinds,
        ["session.created", "session.paid", "session.released"]
    );
    assert!(app
        .server
        .wallets()
        .verify_ledger()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_read_after_the_hold_deadline_shows_the_session_expired_and_the_funds_returned() {
    let (app, id, payer) = held_briefly().await;
    app.server.clock.advance_ms(2_000);
    assert_eq!(app.read(&id).await["captureStatus"], "held", "not yet due");
    app.server.clock.advance_ms(1_001);
    let session = app.read(&id).await;
    assert_eq!(
        (
            session["status"].as_str(),
            session["captureStatus"].as_str()
        ),
        (Some("expired"), Some("released"))
    );
    assert_eq!(balances(&app, &payer).await, (300, 0, 0));
    // The list agrees.
    let listed: Value = app
        .get("/v1/sessions", app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["status"], "expired");
    // The sweeper, coming by later, finds nothing left to do.
    use walleot_server::domain::Clock;
    let store = &app.server.services.store;
    assert_eq!(
        payments::lapse_due(&**store, app.server.clock.now_ms(), 10)
            .await
            .unwrap(),
        0
    );
}

#[tokio::test]
async fn a_list_after_the_hold_deadline_shows_the_session_expired() {
    let (app, id, payer) = held_briefly().await;
    app.server.clock.advance_ms(3_001);
    let listed: Value = app
        .get("/v1/sessions", app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["sessionId"], id.as_str());
    assert_eq!(
        (
            listed["data"][0]["status"].as_str(),
            listed["data"][0]["captureStatus"].as_str()
        ),
        (Some("expired"), Some("released"))
    );
    assert_eq!(balances(&app, &payer).await, (300, 0, 0));
}

/// A capture sent with an idempotency key keeps its answer in the transaction that
/// captures: a retry replays it byte for byte, and it is the session as stored.
#[tokio::test]
async fn an_idempotent_capture_keeps_its_answer_with_the_capture() {
    let app = spawn_app().await;
    for (verb, status) in [("capture", "captured"), ("release", "released")] {
        let (id, _) = held(&app, 180).await;
        let send = || {
            reqwest::Client::new()
                .post(format!("{}/v1/sessions/{id}/{verb}", app.server.base_url))
                .bearer_auth(app.key())
                .header("Idempotency-Key", format!("{verb}-{id}"))
                .send()
        };
        let first = send().await.unwrap();
        assert_eq!(first.status(), 200);
        assert!(first.headers().get("idempotent-replayed").is_none());
        let first = first.bytes().await.unwrap();
        let again = send().await.unwrap();
        assert_eq!(again.status(), 200);
        assert_eq!(again.headers()["idempotent-replayed"], "true");
        assert_eq!(
            again.bytes().await.unwrap(),
            first,
            "replayed byte for byte"
        );
        let kept: Value = serde_json::from_slice(&first).unwrap();
        assert_eq!(kept["captureStatus"], status);
        assert_eq!(
            kept,
            app.read(&id).await,
            "the answer is the session as stored"
        );
    }
}
