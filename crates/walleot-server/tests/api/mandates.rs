//! Mandates through the API: a session for a covered customer is paid at creation, the
//! budgets hold under concurrency, released holds give the budget back, and a mandate
//! never covers another merchant, customer, mode or currency.

use crate::helpers::{assert_error, spawn_app, spawn_app_with, App};
use serde_json::{json, Value};
use walleot_api::MandatePeriod;
use walleot_server::domain::mandates::{Grant, MandateLimits};
use walleot_server::domain::Livemode;

/// A payer (with 10.00 USD of test credits) who pays a first session of `customer` at
/// its checkout and grants a mandate from it with these limits. Answers the payer's
/// id and the mandate's.
async fn granted(app: &App, customer: &str, limits: MandateLimits) -> (String, String) {
    let first = app
        .create_session_with(
            app.key(),
            json!({"amount": 25, "currency": "usd", "customer": customer}),
        )
        .await;
    assert_eq!(first["status"], "pending", "no mandate yet: {first}");
    assert!(first["mandateId"].is_null());
    let id = first["sessionId"].as_str().unwrap();
    let payer_id = app.pay_as_new_payer(id).await;
    let mandate = app
        .server
        .mandates()
        .grant(Grant {
            payer_id: payer_id.clone(),
            session_id: id.to_string(),
            limits,
            expires_at: None,
        })
        .await
        .unwrap();
    (payer_id, mandate.id)
}

fn limits(per_call: Option<i64>, per_day: Option<i64>, total: Option<i64>) -> MandateLimits {
    MandateLimits::new(per_call, per_day.map(|v| (MandatePeriod::Day, v)), total).unwrap()
}

async fn create(app: &App, key: &str, body: Value) -> Value {
    app.create_session_with(key, body).await
}

/// The statuses of `n` sessions created one after another with `body`.
async fn statuses(app: &App, body: &Value, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let session = create(app, app.key(), body.clone()).await;
        out.push(session["status"].as_str().unwrap().to_string());
    }
    out
}

async fn list(app: &App, query: &str) -> Value {
    let response = app.get(&format!("/v1/mandates{query}"), app.key()).await;
    assert_eq!(response.status(), 200, "{query}");
    response.json().await.unwrap()
}

async fn mandate(app: &App, id: &str) -> Value {
    let response = app.get(&format!("/v1/mandates/{id}"), app.key()).await;
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test]
async fn a_covered_customer_is_charged_at_creation_without_a_link() {
    let app = spawn_app().await;
    let (payer, mandate_id) = granted(&app, "agent-7", limits(Some(50), Some(200), None)).await;
    let before = app.server.wallets().balances(&payer).await.unwrap()[0].available();

    let paid = create(
        &app,
        app.key(),
        json!({"amount": 40, "currency": "usd", "customer": "agent-7"}),
    )
    .await;
    assert_eq!(paid["status"], "paid", "{paid}");
    assert_eq!(paid["mandateId"], mandate_id.as_str());
    assert_eq!(paid["customer"], "agent-7");
    let after = app.server.wallets().balances(&payer).await.unwrap()[0].available();
    assert_eq!(before - after, 40, "the payer's wallet paid it");

    // Manual capture: held, and captured like any other hold.
    let held = create(
        &app,
        app.key(),
        json!({"amount": 30, "currency": "usd", "customer": "agent-7", "captureMethod": "manual"}),
    )
    .await;
    assert_eq!(
        (held["status"].as_str(), held["captureStatus"].as_str()),
        (Some("paid"), Some("held"))
    );
    let id = held["sessionId"].as_str().unwrap();
    let captured: Value = app
        .post(&format!("/v1/sessions/{id}/capture"), app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(captured["captureStatus"], "captured");

    let read = mandate(&app, &mandate_id).await;
    assert_eq!(read["status"], "active");
    assert_eq!(
        (read["spentInPeriod"].as_i64(), read["spentTotal"].as_i64()),
        (Some(70), Some(70))
    );
    assert_eq!(read["remaining"], 130);
    assert_eq!(
        (read["perCallLimit"].as_i64(), read["periodLimit"].as_i64()),
        (Some(50), Some(200))
    );
    assert_eq!(read["period"], "day");
    assert!(
        read["periodEndsAt"]
            .as_str()
            .unwrap()
            .ends_with("T00:00:00Z"),
        "{read}"
    );
    assert!(
        read.get("payerId").is_none(),
        "the merchant is not told who the payer is"
    );
}

#[tokio::test]
async fn each_limit_sends_the_payer_a_link_again() {
    let app = spawn_app().await;
    // Per call: an amount over it is pending, with its link.
    granted(&app, "per-call", limits(Some(50), None, None)).await;
    let over = create(
        &app,
        app.key(),
        json!({"amount": 51, "currency": "usd", "customer": "per-call"}),
    )
    .await;
    assert_eq!(over["status"], "pending");
    assert!(over["mandateId"].is_null() && over["url"].as_str().unwrap().contains("/checkout/"));

    // Per day: three of 40 fit 100 twice; the day after, the budget is whole again.
    granted(&app, "per-day", limits(None, Some(100), None)).await;
    let day = json!({"amount": 40, "currency": "usd", "customer": "per-day"});
    assert_eq!(statuses(&app, &day, 3).await, ["paid", "paid", "pending"]);
    app.server.clock.advance_ms(24 * 3600 * 1000);
    assert_eq!(
        statuses(&app, &day, 3).await,
        ["paid", "paid", "pending"],
        "a new day, a new budget"
    );

    // In total: no period resets it.
    granted(&app, "in-total", limits(None, None, Some(60))).await;
    let total = |amount: i64| json!({"amount": amount, "currency": "usd", "customer": "in-total"});
    assert_eq!(statuses(&app, &total(60), 1).await, ["paid"]);
    assert_eq!(statuses(&app, &total(1), 1).await, ["pending"]);

    // Expiry: 30 days by default; the change is recorded as an event.
    let (_, expiring_id) = granted(&app, "expiring", limits(Some(50), None, None)).await;
    let expiring = json!({"amount": 5, "currency": "usd", "customer": "expiring"});
    assert_eq!(statuses(&app, &expiring, 1).await, ["paid"]);
    app.server.clock.advance_ms(30 * 24 * 3600 * 1000);
    assert_eq!(statuses(&app, &expiring, 1).await, ["pending"], "expired");
    assert_eq!(mandate(&app, &expiring_id).await["status"], "expired");
    let mandates = app.server.mandates();
    assert!(mandates.record_expiries(500).await.unwrap() >= 1);
    assert_eq!(
        mandates.record_expiries(500).await.unwrap(),
        0,
        "recorded once"
    );
    let kinds: Vec<_> = mandates
        .events(&expiring_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["mandate.granted", "mandate.expired"]);
}

#[tokio::test]
async fn revoking_takes_effect_at_once() {
    let app = spawn_app().await;
    let (payer, mandate_id) = granted(&app, "agent-r", limits(Some(50), None, None)).await;
    let body = json!({"amount": 10, "currency": "usd", "customer": "agent-r"});
    assert_eq!(
        create(&app, app.key(), body.clone()).await["status"],
        "paid"
    );
    let revoked = app
        .server
        .mandates()
        .revoke(&payer, &mandate_id)
        .await
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    let again = app
        .server
        .mandates()
        .revoke(&payer, &mandate_id)
        .await
        .unwrap();
    assert_eq!(
        again.revoked_at, revoked.revoked_at,
        "revoking twice changes nothing"
    );
    let kinds: Vec<_> = app
        .server
        .mandates()
        .events(&mandate_id)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds, ["mandate.granted", "mandate.revoked"]);
    assert_eq!(create(&app, app.key(), body).await["status"], "pending");
    let read = mandate(&app, &mandate_id).await;
    assert_eq!(
        (read["status"].as_str(), read["remaining"].as_i64()),
        (Some("revoked"), Some(0))
    );
    assert!(read["revokedAt"].is_string());
    // Nobody else revokes a payer's mandate.
    let (other, _) = granted(&app, "agent-s", limits(Some(50), None, None)).await;
    assert!(app
        .server
        .mandates()
        .revoke(&other, &mandate_id)
        .await
        .is_err());
}

#[tokio::test]
async fn a_mandate_never_covers_another_merchant_customer_mode_or_currency() {
    let app = spawn_app().await;
    granted(&app, "agent-n", limits(Some(500), None, None)).await;
    let other_customer = create(
        &app,
        app.key(),
        json!({"amount": 10, "currency": "usd", "customer": "agent-m"}),
    )
    .await;
    let no_customer = create(&app, app.key(), json!({"amount": 10, "currency": "usd"})).await;
    let other_currency = create(
        &app,
        app.key(),
        json!({"amount": 10, "currency": "eur", "customer": "agent-n"}),
    )
    .await;
    let live = app.server.live_key.clone();
    let other_mode = create(
        &app,
        &live,
        json!({"amount": 10, "currency": "usd", "customer": "agent-n"}),
    )
    .await;
    let other_key = app
        .server
        .other_merchant_key("Other Tools", Livemode::Test)
        .await;
    let other_merchant = create(
        &app,
        &other_key,
        json!({"amount": 10, "currency": "usd", "customer": "agent-n"}),
    )
    .await;
    for (case, session) in [
        ("another customer", other_customer),
        ("no customer", no_customer),
        ("another currency", other_currency),
        ("the other mode", other_mode),
        ("another merchant", other_merchant),
    ] {
        assert_eq!(session["status"], "pending", "{case}: {session}");
        assert!(session["mandateId"].is_null(), "{case}");
    }
    // The other merchant cannot read this merchant's mandates either.
    let listed: Value = app
        .get("/v1/mandates", &other_key)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_concurrent_creations_never_spend_past_the_budget() {
    let app = spawn_app_with(|c| c.limits.sessions_per_window = 1_000).await;
    let (payer, mandate_id) = granted(&app, "busy-agent", limits(None, Some(100), None)).await;
    let before = app.server.wallets().balances(&payer).await.unwrap()[0].available();
    let body = json!({"amount": 10, "currency": "usd", "customer": "busy-agent"}).to_string();
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..100 {
        let (http, url, key, body) = (
            app.http.clone(),
            app.url("/v1/sessions"),
            app.key().to_string(),
            body.clone(),
        );
        calls.spawn(async move {
            let answer: Value = http
                .post(url)
                .bearer_auth(key)
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["status"].as_str().unwrap().to_string()
        });
    }
    let statuses = calls.join_all().await;
    assert_eq!(
        statuses.iter().filter(|s| *s == "paid").count(),
        10,
        "{statuses:?}"
    );
    assert_eq!(statuses.iter().filter(|s| *s == "pending").count(), 90);
    let after = app.server.wallets().balances(&payer).await.unwrap()[0].available();
    assert_eq!(before - after, 100);
    assert_eq!(mandate(&app, &mandate_id).await["remaining"], 0);
}

#[tokio::test]
async fn released_and_lapsed_holds_give_the_budget_back() {
    let app = spawn_app().await;
    let (_, mandate_id) = granted(&app, "agent-h", limits(None, Some(50), Some(50))).await;
    let body =
        json!({"amount": 50, "currency": "usd", "customer": "agent-h", "captureMethod": "manual"});
    let hold = || create(&app, app.key(), body.clone());
    let first = hold().await;
    assert_eq!(first["captureStatus"], "held");
    assert_eq!(hold().await["status"], "pending", "the budget is held");
    let id = first["sessionId"].as_str().unwrap();
    let released = app
        .post(&format!("/v1/sessions/{id}/release"), app.key())
        .await;
    assert_eq!(released.status(), 200);
    assert_eq!(
        mandate(&app, &mandate_id).await["remaining"],
        50,
        "a release gives it back"
    );

    let second = hold().await;
    assert_eq!(second["captureStatus"], "held");
    // The hold lapses at its deadline (a day by default), uncaptured.
    app.server.clock.advance_ms(24 * 3600 * 1000 + 1);
    let read: Value = app
        .get(
            &format!("/v1/sessions/{}", second["sessionId"].as_str().unwrap()),
            app.key(),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["captureStatus"], "released");
    assert_eq!(
        mandate(&app, &mandate_id).await["remaining"],
        50,
        "a lapse gives it back"
    );
}

/// What a metered capture leaves uncaptured, and what is refunded, goes back to the
/// mandate's budget as it goes back to the payer.
#[tokio::test]
async fn a_metered_capture_and_a_refund_give_the_budget_back() {
    let app = spawn_app().await;
    let (_, mandate_id) = granted(&app, "agent-m", limits(None, Some(100), Some(100))).await;
    let body =
        json!({"amount": 100, "currency": "usd", "customer": "agent-m", "captureMethod": "manual"});
    let first = create(&app, app.key(), body.clone()).await;
    assert_eq!(first["captureStatus"], "held");
    assert_eq!(mandate(&app, &mandate_id).await["remaining"], 0);
    let id = first["sessionId"].as_str().unwrap();
    let captured = app
        .post_json(
            &format!("/v1/sessions/{id}/capture"),
            app.key(),
            &json!({"amount": 30}),
        )
        .await;
    assert_eq!(captured.status(), 200);
    let usage = mandate(&app, &mandate_id).await;
    assert_eq!(
        (&usage["remaining"], &usage["spentTotal"]),
        (&json!(70), &json!(30))
    );
    let refunded = app
        .post_json(
            &format!("/v1/sessions/{id}/refunds"),
            app.key(),
            &json!({"amount": 10}),
        )
        .await;
    assert_eq!(refunded.status(), 200);
    let usage = mandate(&app, &mandate_id).await;
    assert_eq!(
        (&usage["remaining"], &usage["spentTotal"]),
        (&json!(80), &json!(20))
    );
    let problems = app.server.wallets().verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "ledger problems: {problems:?}");
}

#[tokio::test]
async fn mandates_are_listed_by_customer_and_status_with_cursors() {
    let app = spawn_app().await;
    let (payer, first) = granted(&app, "lister", limits(Some(5), None, None)).await;
    let (_, second) = granted(&app, "lister", limits(Some(6), None, None)).await;
    let (_, _third) = granted(&app, "someone-else", limits(Some(7), None, None)).await;
    app.server.mandates().revoke(&payer, &first).await.unwrap();

    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["mandateId"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&list(&app, "?customer=lister").await),
        [second.clone(), first.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?customer=lister&status=active").await),
        vec![second.clone()]
    );
    assert_eq!(
        ids(&list(&app, "?status=revoked").await),
        vec![first.clone()]
    );
    let page = list(&app, "?limit=1&customer=lister").await;
    assert_eq!(
        (ids(&page), page["hasMore"].as_bool()),
        (vec![second.clone()], Some(true))
    );
    let next = app
        .get(
            &format!(
                "/v1/mandates?limit=1&customer=lister&cursor={}",
                page["nextCursor"].as_str().unwrap()
            ),
            app.key(),
        )
        .await
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(
        (ids(&next), next["nextCursor"].is_null()),
        (vec![first.clone()], true)
    );
}

#[tokio::test]
async fn bad_customers_queries_and_ids_get_clear_errors() {
    let app = spawn_app().await;
    for (customer, why) in [
        (json!(""), "empty"),
        (json!("x".repeat(256)), "too long"),
        (json!("agent\u{7}"), "a control character"),
        (json!("agënt"), "not ASCII"),
        (json!(7), "not a string"),
    ] {
        let response = app
            .post_json(
                "/v1/sessions",
                app.key(),
                &json!({"amount": 10, "currency": "usd", "customer": customer}),
            )
            .await;
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(message.contains("customer"), "{why}: {message}");
    }
    for (query, status) in [
        ("?status=paused", 400),
        ("?limit=0", 400),
        ("?limit=101", 400),
        ("?cursor=sess_x", 400),
        ("?cursor=mdt_AAAAAAAAAAAAAAAAAAAAAAAA", 404),
        ("?colour=blue", 400),
        // PostgreSQL's text cannot hold a NUL: refused before it reaches the database.
        ("?customer=agent%00", 400),
    ] {
        let response = app.get(&format!("/v1/mandates{query}"), app.key()).await;
        assert_eq!(response.status(), status, "{query}");
        let body: Value = response.json().await.unwrap();
        assert!(body["error"]["message"].is_string(), "{query}: {body}");
    }
    for id in ["mdt_AAAAAAAAAAAAAAAAAAAAAAAA", "mdt_%00", "%00"] {
        let missing = app.get(&format!("/v1/mandates/{id}"), app.key()).await;
        assert_error(missing, 404, "not_found").await;
    }
    let unauthenticated = app
        .request(reqwest::Method::GET, "/v1/mandates", None, None)
        .await;
    assert_eq!(unauthenticated.status(), 401);
}

#[tokio::test]
async fn a_replayed_creation_answers_what_the_first_did() {
    let app = spawn_app().await;
    granted(&app, "agent-i", limits(Some(50), Some(50), None)).await;
    let send = || async {
        app.http
            .post(app.url("/v1/sessions"))
            .bearer_auth(app.key())
            .header("idempotency-key", "mandate-once")
            .json(&json!({"amount": 50, "currency": "usd", "customer": "agent-i"}))
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
    };
    let first = send().await;
    assert_eq!(first["status"], "paid");
    let again = send().await;
    assert_eq!(
        again, first,
        "the paid answer is kept, and nothing is charged twice"
    );
}

#[tokio::test]
async fn the_sandbox_payer_grants_mandates_through_the_test_helper() {
    let app = spawn_app().await;
    let first = create(
        &app,
        app.key(),
        json!({"amount": 19, "currency": "usd", "customer": "sdk-test"}),
    )
    .await;
    let id = first["sessionId"].as_str().unwrap();
    let grant = |id: String, body: Value, key: String| {
        let app = &app;
        async move {
            app.post_json(
                &format!("/v1/test_helpers/sessions/{id}/grant_mandate"),
                &key,
                &body,
            )
            .await
        }
    };
    let terms = json!({"perCallLimit": 50, "periodLimit": {"amount": 100, "per": "day"}});
    // Not before the session is paid with the pay helper.
    let unpaid = grant(id.to_string(), terms.clone(), app.key().to_string()).await;
    assert_error(unpaid, 409, "conflict").await;
    let paid = app
        .post(&format!("/v1/test_helpers/sessions/{id}/pay"), app.key())
        .await;
    assert_eq!(paid.status(), 200);
    for (bad, why) in [
        (json!({"period": "day"}), "a period outside its limit"),
        (
            json!({"periodLimit": {"amount": 100}}),
            "a limit without its period",
        ),
        (
            json!({"periodLimit": {"amount": 100, "per": "fortnight"}}),
            "an unknown period",
        ),
        (json!({"perCallLimit": 0}), "zero"),
        (
            json!({"perCallLimit": 5, "colour": "blue"}),
            "an unknown field",
        ),
        (json!({"perCallLimit": 5, "expiresIn": 10}), "too short"),
    ] {
        let refused = grant(id.to_string(), bad, app.key().to_string()).await;
        assert_eq!(refused.status(), 400, "{why}");
    }
    let live = grant(id.to_string(), terms.clone(), app.server.live_key.clone()).await;
    assert_eq!(live.status(), 403);

    let granted: Value = grant(id.to_string(), terms, app.key().to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (granted["status"].as_str(), granted["customer"].as_str()),
        (Some("active"), Some("sdk-test"))
    );
    assert_eq!(granted["remaining"], 100);
    let body =
        json!({"amount": 45, "currency": "usd", "customer": "sdk-test", "captureMethod": "manual"});
    assert_eq!(
        statuses(&app, &body, 3).await,
        ["paid", "paid", "pending"],
        "covered from the sandbox, within 1.00 a day"
    );

    // Without any limit, the per-call limit is the paid session's amount (0.19).
    let other = create(
        &app,
        app.key(),
        json!({"amount": 19, "currency": "usd", "customer": "sdk-default"}),
    )
    .await;
    let other_id = other["sessionId"].as_str().unwrap();
    let paid = app
        .post(
            &format!("/v1/test_helpers/sessions/{other_id}/pay"),
            app.key(),
        )
        .await;
    assert_eq!(paid.status(), 200);
    let plain: Value = grant(other_id.to_string(), json!({}), app.key().to_string())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (plain["perCallLimit"].as_i64(), plain["remaining"].is_null()),
        (Some(19), true)
    );
}
