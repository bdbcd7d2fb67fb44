//! Signed receipts: a captured payment's receipt verifies with the key the service
//! publishes, fails when anything in it changes, and keeps verifying after a rotation.

use crate::helpers::{assert_error, spawn_app, App};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Value};
use walleot_client::{verify_receipt, Jwks, ReceiptError};
use walleot_server::domain::receipts::Receipts;
use walleot_server::domain::Livemode;

async fn receipt(app: &App, id: &str) -> Value {
    let response = app
        .get(&format!("/v1/sessions/{id}/receipt"), app.key())
        .await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

async fn jwks(app: &App) -> Jwks {
    let response = app
        .http
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "published without a key");
    response.json().await.unwrap()
}

/// `jws` with its payload replaced by `payload`, the signature kept.
fn with_payload(jws: &str, payload: &Value) -> String {
    let parts: Vec<&str> = jws.split('.').collect();
    format!(
        "{}.{}.{}",
        parts[0],
        URL_SAFE_NO_PAD.encode(payload.to_string()),
        parts[2]
    )
}

#[tokio::test]
async fn a_captured_payments_receipt_verifies_and_any_change_breaks_it() {
    let app = spawn_app().await;
    let created = app
        .create_session_with(
            app.key(),
            json!({"amount": 275, "currency": "usd", "metadata": {"walleot_tool": "summarize"}}),
        )
        .await;
    let id = created["sessionId"].as_str().unwrap();
    let message = assert_error(
        app.get(&format!("/v1/sessions/{id}/receipt"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
    assert!(message.contains("pending"), "{message}");
    assert_eq!(
        app.post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
            .await
            .status(),
        200
    );

    let answer = receipt(&app, id).await;
    let jws = answer["receipt"].as_str().unwrap();
    assert_eq!(
        receipt(&app, id).await,
        answer,
        "the same receipt while nothing changed"
    );
    let keys = jwks(&app).await;
    assert_eq!(keys.keys.len(), 1);
    assert_eq!(answer["keyId"], keys.keys[0].kid.as_str());
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(jws.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        (&header["alg"], &header["kid"]),
        (&json!("EdDSA"), &answer["keyId"])
    );

    let claims = verify_receipt(jws, &keys).unwrap();
    assert_eq!(claims.session_id, id);
    assert_eq!(claims.merchant_id, app.server.merchant_id);
    assert_eq!(
        (
            claims.amount_captured,
            claims.currency.code(),
            claims.livemode
        ),
        (275, "usd", false)
    );
    assert_eq!(claims.metadata["walleot_tool"], "summarize");
    assert_eq!(claims.iss, app.server.public_url);
    assert_eq!(claims.amount_refunded, 0);

    // A refund shows on receipts issued after it; the one kept from before still
    // verifies, and its earlier `iat` tells it apart.
    app.server.clock.advance_ms(5_000);
    let refund = app
        .post(&format!("/v1/sessions/{id}/refunds"), app.key())
        .await;
    assert_eq!(refund.status(), 200);
    let later = receipt(&app, id).await;
    let later = verify_receipt(later["receipt"].as_str().unwrap(), &keys).unwrap();
    assert_eq!((later.amount_captured, later.amount_refunded), (275, 275));
    assert!(
        later.iat >= claims.iat + 5,
        "{} then {}",
        claims.iat,
        later.iat
    );
    assert_eq!(verify_receipt(jws, &keys), Ok(claims.clone()));

    let payload = serde_json::to_value(&claims).unwrap();
    for (field, value) in [
        ("amountCaptured", json!(1)),
        ("sessionId", json!("sess_AAAAAAAAAAAAAAAAAAAAAAAA")),
        ("merchantId", json!("mer_other")),
        ("currency", json!("eur")),
        ("livemode", json!(true)),
        ("metadata", json!({"walleot_tool": "other"})),
        ("capturedAt", json!("2020-01-01T00:00:00Z")),
        ("amountRefunded", json!(275)),
        ("iat", json!(claims.iat + 3600)),
    ] {
        let mut changed = payload.clone();
        changed[field] = value;
        assert_eq!(
            verify_receipt(&with_payload(jws, &changed), &keys),
            Err(ReceiptError::Signature),
            "{field}"
        );
    }
    let mut signature = URL_SAFE_NO_PAD
        .decode(jws.rsplit('.').next().unwrap())
        .unwrap();
    signature[0] ^= 1;
    let forged = format!(
        "{}.{}",
        jws.rsplit_once('.').unwrap().0,
        URL_SAFE_NO_PAD.encode(signature)
    );
    assert_eq!(verify_receipt(&forged, &keys), Err(ReceiptError::Signature));
    assert!(verify_receipt("a.b", &keys).is_err());
    assert!(matches!(
        verify_receipt(jws, &Jwks { keys: vec![] }),
        Err(ReceiptError::UnknownKey(_))
    ));
}

#[tokio::test]
async fn receipts_signed_before_a_rotation_still_verify() {
    let app = spawn_app().await;
    let first = app.create_session().await;
    app.post(&format!("/v1/test_helpers/sessions/{first}/pay"), app.key())
        .await;
    let before = receipt(&app, &first).await;
    let receipts = Receipts::new(
        app.server.services.store.clone(),
        app.server.clock.clone(),
        &app.server.public_url,
    );
    let added = receipts.rotate().await.unwrap();
    let after = receipt(&app, &first).await;
    assert_eq!(after["keyId"], added.kid.as_str(), "the newest key signs");
    assert_ne!(after["keyId"], before["keyId"]);
    let keys = jwks(&app).await;
    assert_eq!(keys.keys.len(), 2);
    assert_eq!(keys.keys[0].kid, added.kid, "newest first");
    for signed in [&before, &after] {
        let claims = verify_receipt(signed["receipt"].as_str().unwrap(), &keys).unwrap();
        assert_eq!(claims.session_id, first);
    }
}

#[tokio::test]
async fn only_ones_own_captured_sessions_have_receipts() {
    let app = spawn_app().await;
    let held = app
        .create_session_with(
            app.key(),
            json!({"amount": 300, "currency": "usd", "captureMethod": "manual"}),
        )
        .await;
    let held = held["sessionId"].as_str().unwrap();
    app.post(&format!("/v1/test_helpers/sessions/{held}/pay"), app.key())
        .await;
    let message = assert_error(
        app.get(&format!("/v1/sessions/{held}/receipt"), app.key())
            .await,
        409,
        "conflict",
    )
    .await;
    assert!(message.contains("held"), "{message}");
    let captured = app
        .post_json(
            &format!("/v1/sessions/{held}/capture"),
            app.key(),
            &json!({"amount": 120}),
        )
        .await;
    assert_eq!(captured.status(), 200);
    let answer = receipt(&app, held).await;
    let claims = verify_receipt(answer["receipt"].as_str().unwrap(), &jwks(&app).await).unwrap();
    assert_eq!(
        claims.amount_captured, 120,
        "what was captured, not what was held"
    );

    let other = app
        .server
        .other_merchant_key("Other shop", Livemode::Test)
        .await;
    for id in [held, "sess_AAAAAAAAAAAAAAAAAAAAAAAA", "%00"] {
        assert_error(
            app.get(&format!("/v1/sessions/{id}/receipt"), &other).await,
            404,
            "not_found",
        )
        .await;
    }
}
