//! Refunds and metered capture through the API: money goes back to the payer by ledger
//! transfer, in parts up to what was captured, once per idempotency key, never past
//! what was captured however many refunds race, and never from a balance the merchant
//! does not have.

use crate::helpers::{assert_error, spawn_app, spawn_app_with, App};
use futures::future::join_all;
use serde_json::{json, Value};
use walleot_server::domain::ledger::{AccountRef, Book, TransferKind, TransferSpec};
use walleot_server::domain::Livemode;

/// A session of `amount` USD cents paid by a new payer (who had 1000 in sandbox
/// credits); `manual` leaves the funds held. Answers the session id and the payer id.
async fn paid(app: &App, amount: i64, manual: bool) -> (String, String) {
    let method = if manual { "manual" } else { "automatic" };
    let session = app
        .create_session_with(
            app.key(),
            json!({"amount": amount, "currency": "usd", "captureMethod": method}),
        )
        .await;
    let id = session["sessionId"].as_str().unwrap().to_string();
    let payer = app.pay_as_new_payer(&id).await;
    (id, payer)
}

async fn refund(app: &App, id: &str, body: Option<Value>) -> reqwest::Response {
    let path = format!("/v1/sessions/{id}/refunds");
    match body {
        Some(body) => app.post_json(&path, app.key(), &body).await,
        None => app.post(&path, app.key()).await,
    }
}

/// The payer's available balance and the merchant's balance, in test USD.
async fn balances(app: &App, payer: &str) -> (i64, i64) {
    let wallets = app.server.wallets();
    let wallet = wallets.balances(payer).await.unwrap()[0].clone();
    let merchant = wallets
        .merchant_accounts(&app.server.merchant_id, false)
        .await
        .unwrap()[0]
        .clone();
    (wallet.available(), merchant.balance())
}

async fn assert_ledger_consistent(app: &App) {
    let problems = app.server.wallets().verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "ledger problems: {problems:?}");
}

#[tokio::test]
async fn a_paid_session_is_refunded_in_parts_up_to_what_was_captured() {
    let app = spawn_app().await;
    let (id, payer) = paid(&app, 300, false).await;
    let session = app.read(&id).await;
    assert_eq!(
        (&session["amountCaptured"], &session["amountRefunded"]),
        (&json!(300), &json!(0))
    );
    assert_eq!(balances(&app, &payer).await, (700, 300));

    let first = refund(
        &app,
        &id,
        Some(json!({"amount": 100, "reason": "tool_failed"})),
    )
    .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    assert!(first["refundId"].as_str().unwrap().starts_with("ref_"));
    assert_eq!(first["sessionId"], id.as_str());
    assert_eq!(
        (&first["amount"], &first["currency"], &first["reason"]),
        (&json!(100), &json!("usd"), &json!("tool_failed"))
    );
    assert_eq!(
        (&first["status"], &first["livemode"]),
        (&json!("succeeded"), &json!(false))
    );
    let session = app.read(&id).await;
    assert_eq!(
        (&session["status"], &session["amountRefunded"]),
        (&json!("paid"), &json!(100))
    );
    assert_eq!(balances(&app, &payer).await, (800, 200));

    let message = assert_error(
        refund(&app, &id, Some(json!({"amount": 250}))).await,
        409,
        "conflict",
    )
    .await;
    assert!(message.contains("at most 200"), "{message}");

    // Without a body: all that is left.
    let rest = refund(&app, &id, None).await;
    assert_eq!(rest.status(), 200);
    let rest: Value = rest.json().await.unwrap();
    assert_eq!(
        (&rest["amount"], &rest["reason"]),
        (&json!(200), &Value::Null)
    );
    assert_eq!(balances(&app, &payer).await, (1000, 0));
    let message = assert_error(refund(&app, &id, None).await, 409, "conflict").await;
    assert!(message.contains("in full"), "{message}");

    let list: Value = app
        .get(&format!("/v1/sessions/{id}/refunds"), app.key())
        .await
        .json()
        .await
        .unwrap();
    let ids: Vec<_> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["refundId"].clone())
        .collect();
    assert_eq!(ids, [first["refundId"].clone(), rest["refundId"].clone()]);
    let session = app.read(&id).await;
    assert_eq!(
        (
            &session["status"],
            &session["amountCaptured"],
            &session["amountRefunded"]
        ),
        (&json!("paid"), &json!(300), &json!(300))
    );
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
        [
            "session.created",
            "session.paid",
            "session.refunded",
            "session.refunded"
        ]
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_refund_is_made_once_under_an_idempotency_key() {
    let app = spawn_app().await;
    let (id, payer) = paid(&app, 300, false).await;
    let send = |body: Value| {
        app.http
            .post(app.url(&format!("/v1/sessions/{id}/refunds")))
            .bearer_auth(app.key())
            .header("idempotency-key", "refund-once")
            .json(&body)
            .send()
    };
    let first = send(json!({"amount": 120})).await.unwrap();
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let again = send(json!({"amount": 120})).await.unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["idempotent-replayed"], "true");
    let again: Value = again.json().await.unwrap();
    assert_eq!(again, first);
    assert_error(
        send(json!({"amount": 60})).await.unwrap(),
        422,
        "idempotency_key_reused",
    )
    .await;
    assert_eq!(balances(&app, &payer).await, (820, 180));
    let list: Value = app
        .get(&format!("/v1/sessions/{id}/refunds"), app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_refunds_never_give_back_more_than_was_captured() {
    let app = spawn_app_with(|c| {
        c.limits.sessions_per_window = 10_000;
    })
    .await;
    let (id, payer) = paid(&app, 1000, false).await;
    let answers = join_all((0..30).map(|_| refund(&app, &id, Some(json!({"amount": 50}))))).await;
    let mut made = 0;
    for answer in answers {
        let status = answer.status().as_u16();
        let body: Value = answer.json().await.unwrap();
        match status {
            200 => made += body["amount"].as_i64().unwrap(),
            409 => {
                let message = body["error"]["message"].as_str().unwrap();
                assert!(message.contains("in full"), "{message}");
            }
            other => panic!("{other}: {body}"),
        }
    }
    assert_eq!(made, 1000);
    assert_eq!(app.read(&id).await["amountRefunded"], 1000);
    assert_eq!(balances(&app, &payer).await, (1000, 0));
    assert_eq!(
        app.server
            .services
            .store
            .refunds_of(&id)
            .await
            .unwrap()
            .len(),
        20
    );
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_refund_the_merchant_balance_cannot_cover_is_refused_with_409() {
    let app = spawn_app().await;
    let (id, payer) = paid(&app, 300, false).await;
    // The merchant's earnings leave its account (as a payout would), all but 50.
    let book = Book::new(walleot_api::Currency::USD, false);
    app.server
        .services
        .store
        .transfer(
            &TransferSpec {
                debit: AccountRef::merchant(&app.server.merchant_id, book),
                credit: AccountRef::vouchers(book),
                amount: 250,
                kind: TransferKind::Voucher,
                session_id: None,
                memo: Some("paid out".into()),
                hold_until: None,
            },
            0,
        )
        .await
        .unwrap();
    let message = assert_error(refund(&app, &id, None).await, 409, "insufficient_balance").await;
    assert!(message.contains("(50)"), "{message}");
    assert_eq!(balances(&app, &payer).await, (700, 50));
    assert_eq!(app.read(&id).await["amountRefunded"], 0);
    // What the balance covers is refunded.
    assert_eq!(
        refund(&app, &id, Some(json!({"amount": 50})))
            .await
            .status(),
        200
    );
    assert_eq!(balances(&app, &payer).await, (750, 0));
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn only_captured_funds_of_ones_own_sessions_are_refunded() {
    let app = spawn_app().await;
    let pending = app.create_session().await;
    let message = assert_error(refund(&app, &pending, None).await, 409, "conflict").await;
    assert!(message.contains("pending"), "{message}");
    let (held, _) = paid(&app, 300, true).await;
    let message = assert_error(refund(&app, &held, None).await, 409, "conflict").await;
    assert!(message.contains("held"), "{message}");
    let (mine, _) = paid(&app, 300, false).await;
    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    for path in [
        format!("/v1/sessions/{mine}/refunds"),
        "/v1/sessions/sess_AAAAAAAAAAAAAAAAAAAAAAAA/refunds".into(),
        "/v1/sessions/%00/refunds".into(),
    ] {
        assert_error(app.post(&path, &other).await, 404, "not_found").await;
        assert_error(app.get(&path, &other).await, 404, "not_found").await;
    }
    for (body, why) in [
        (json!({"amount": 0}), "zero"),
        (json!({"amount": -5}), "negative"),
        (json!({"amount": "50"}), "a string"),
        (json!({"amount": 1.5}), "a fraction"),
        (json!({"reason": "changed_mind"}), "an unknown reason"),
        (json!({"amount": 10, "colour": "blue"}), "an unknown field"),
        (json!([10]), "not an object"),
    ] {
        let response = refund(&app, &mine, Some(body)).await;
        assert_eq!(response.status(), 400, "{why}");
    }
    let not_json = app
        .http
        .post(app.url(&format!("/v1/sessions/{mine}/refunds")))
        .bearer_auth(app.key())
        .header("content-type", "text/plain")
        .body("amount=10")
        .send()
        .await
        .unwrap();
    assert_error(not_json, 415, "invalid_request").await;
    assert_eq!(app.read(&mine).await["amountRefunded"], 0);
}

#[tokio::test]
async fn a_metered_capture_takes_what_was_used_and_gives_the_rest_back() {
    let app = spawn_app().await;
    let (id, payer) = paid(&app, 300, true).await;
    for (body, status, why) in [
        (json!({"amount": 0}), 400, "zero"),
        (json!({"amount": "120"}), 400, "a string"),
        (
            json!({"amount": 120, "extra": true}),
            400,
            "an unknown field",
        ),
        (json!({"amount": 301}), 409, "more than held"),
    ] {
        let response = app
            .post_json(&format!("/v1/sessions/{id}/capture"), app.key(), &body)
            .await;
        assert_eq!(response.status(), status, "{why}");
    }
    assert_eq!(app.read(&id).await["captureStatus"], "held");

    let captured = app
        .post_json(
            &format!("/v1/sessions/{id}/capture"),
            app.key(),
            &json!({"amount": 120}),
        )
        .await;
    assert_eq!(captured.status(), 200);
    let captured: Value = captured.json().await.unwrap();
    assert_eq!(
        (
            &captured["status"],
            &captured["captureStatus"],
            &captured["amountCaptured"]
        ),
        (&json!("paid"), &json!("captured"), &json!(120))
    );
    assert_eq!(
        captured["amount"], 300,
        "the amount asked for stays as it was"
    );
    assert_eq!(balances(&app, &payer).await, (880, 120));
    // Capturing again changes nothing.
    let again = app
        .post_json(
            &format!("/v1/sessions/{id}/capture"),
            app.key(),
            &json!({"amount": 120}),
        )
        .await;
    assert_eq!(again.status(), 200);
    assert_eq!(balances(&app, &payer).await, (880, 120));
    // What was captured can be refunded, no more.
    let message = assert_error(
        refund(&app, &id, Some(json!({"amount": 121}))).await,
        409,
        "conflict",
    )
    .await;
    assert!(message.contains("at most 120"), "{message}");
    assert_eq!(refund(&app, &id, None).await.status(), 200);
    assert_eq!(balances(&app, &payer).await, (1000, 0));
    assert_ledger_consistent(&app).await;
}

#[tokio::test]
async fn a_capture_without_an_amount_or_with_all_of_it_takes_everything() {
    let app = spawn_app().await;
    for body in [None, Some(json!({})), Some(json!({"amount": 300}))] {
        let (id, payer) = paid(&app, 300, true).await;
        let path = format!("/v1/sessions/{id}/capture");
        let response = match &body {
            Some(body) => app.post_json(&path, app.key(), body).await,
            None => app.post(&path, app.key()).await,
        };
        assert_eq!(response.status(), 200, "{body:?}");
        let session: Value = response.json().await.unwrap();
        assert_eq!(session["amountCaptured"], 300, "{body:?}");
        assert_eq!(balances(&app, &payer).await.0, 700, "{body:?}");
    }
    assert_ledger_consistent(&app).await;
}
