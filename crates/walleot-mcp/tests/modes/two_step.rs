//! TWO_STEP: the link and payment id first, the confirm tool runs the call once paid.

use crate::support::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use walleot_mcp::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tools_list_shows_prices_and_the_confirm_tools() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    let tools = client.list_all_tools().await.unwrap();
    let by_name = |n: &str| {
        tools
            .iter()
            .find(|t| t.name == n)
            .unwrap_or_else(|| panic!("no tool {n}"))
    };
    assert_eq!(
        by_name("add").meta.as_ref().unwrap().get("price"),
        Some(&json!({"amount": 0.19, "currency": "USD"}))
    );
    assert_eq!(
        by_name("add").description.as_deref(),
        Some("Adds two numbers.")
    );
    assert_eq!(
        by_name("premium_analysis")
            .meta
            .as_ref()
            .unwrap()
            .get("price"),
        Some(&json!({"amount": 0.5, "currency": "USD"}))
    );
    assert!(by_name("ping")
        .meta
        .as_ref()
        .and_then(|m| m.get("price"))
        .is_none());
    let confirm = by_name("confirm_add_payment");
    assert_eq!(confirm.input_schema["required"], json!(["payment_id"]));
    assert_eq!(call(&client, "ping", json!({})).await.is_error, Some(false));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_step_pays_then_runs_once_and_captures() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    let first = call(&client, "add", json!({"a": 1, "b": 2})).await;
    let required = structured(&first);
    assert_eq!(required["status"], "payment_required");
    assert_eq!(
        (
            required["amount"].as_f64(),
            required["amountMinor"].as_i64(),
            required["currency"].as_str()
        ),
        (Some(0.19), Some(19), Some("USD"))
    );
    assert!(required["expiresAt"]
        .as_str()
        .is_some_and(|t| t.ends_with('Z')));
    assert_eq!(
        first.is_error,
        Some(true),
        "the tool's work was not handed out"
    );
    assert_eq!(
        required["nextStep"]
            .as_str()
            .map(|s| s.contains("confirm_add_payment")),
        Some(true)
    );
    let payment_id = required["paymentId"].as_str().unwrap().to_string();
    let session = session_in(&required);
    assert!(session.starts_with("sess_"));
    assert!(
        payment_id.len() >= 26
            && !required["paymentUrl"]
                .as_str()
                .unwrap()
                .contains(&payment_id),
        "the payment id is a secret of its own, not in the checkout link"
    );
    assert_eq!(
        setup.runs.load(Ordering::SeqCst),
        0,
        "nothing runs before payment"
    );

    let early = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(structured(&early)["status"], "pending");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 0);

    setup.pay(&session).await;
    assert_eq!(setup.session(&session).await["captureStatus"], "held");
    let done = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(text(&done), "3");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
    assert_eq!(setup.session(&session).await["captureStatus"], "captured");
    assert_eq!(setup.merchant_balance().await, 19);

    // Confirming again returns the kept result; the tool does not run twice.
    let again = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(text(&again), "3");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cheap_payment_does_not_confirm_an_expensive_tool() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    let answer = call(&client, "add", json!({"a": 1, "b": 1})).await;
    let cheap = payment_id_of(&answer);
    setup.pay(&session_of(&answer)).await;
    let stolen = call(
        &client,
        "confirm_premium_analysis_payment",
        json!({"payment_id": cheap}),
    )
    .await;
    assert_eq!(stolen.is_error, Some(true));
    assert_eq!(structured(&stolen)["status"], "refused");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 0);
    let unknown = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": "sess_000000000000000000000000"}),
    )
    .await;
    assert_eq!(unknown.is_error, Some(true));
    let missing = call(&client, "confirm_add_payment", json!({})).await;
    assert_eq!(missing.is_error, Some(true));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_checkout_link_does_not_confirm_but_the_payment_id_survives_a_reconnect() {
    let setup = Setup::start(Mode::TwoStep).await;
    let owner = setup.client().await;
    let answer = call(&owner, "add", json!({"a": 2, "b": 2})).await;
    let payment_id = payment_id_of(&answer);
    let session = session_of(&answer);
    setup.pay(&session).await;
    // Whoever saw the checkout link knows the session id: that takes nothing.
    let thief = setup.client().await;
    let stolen = call(
        &thief,
        "confirm_add_payment",
        json!({"payment_id": session}),
    )
    .await;
    assert_eq!(stolen.is_error, Some(true));
    assert_eq!(setup.runs.load(Ordering::SeqCst), 0);
    // The payer's agent drops its MCP session and opens another: the paid payment
    // still confirms with its payment id.
    owner.cancel().await.unwrap();
    let reconnected = setup.client().await;
    assert_eq!(
        text(
            &call(
                &reconnected,
                "confirm_add_payment",
                json!({"payment_id": payment_id})
            )
            .await
        ),
        "4"
    );
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_confirms_run_the_tool_once() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = Arc::new(setup.client().await);
    let answer = call(&client, "add", json!({"a": 20, "b": 22})).await;
    let payment_id = payment_id_of(&answer);
    setup.pay(&session_of(&answer)).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let (client, id) = (client.clone(), payment_id.clone());
            tokio::spawn(async move {
                text(&call(&client, "confirm_add_payment", json!({"payment_id": id})).await)
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), "42");
    }
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
    assert_eq!(setup.merchant_balance().await, 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tool_costs_the_payer_nothing() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    let answer = call(&client, "flaky", json!({})).await;
    let payment_id = payment_id_of(&answer);
    setup.pay(&session_of(&answer)).await;
    let failed = call(
        &client,
        "confirm_flaky_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(failed.is_error, Some(true));
    assert!(text(&failed).contains("upstream is down"));
    let session = setup.session(&session_of(&answer)).await;
    assert_eq!(
        (
            session["status"].as_str(),
            session["captureStatus"].as_str()
        ),
        (Some("cancelled"), Some("released"))
    );
    assert_eq!(setup.merchant_balance().await, 0);
    assert!(setup
        .service
        .wallets()
        .verify_ledger()
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_that_is_down_gives_a_clear_tool_error_not_a_hang() {
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let setup = Setup::start_with(Mode::TwoStep, Some(format!("http://{closed}"))).await;
    let client = setup.client().await;
    let started = std::time::Instant::now();
    let result = call(&client, "add", json!({"a": 1, "b": 2})).await;
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(result.is_error, Some(true));
    assert_eq!(structured(&result)["status"], "error");
    assert!(text(&result).contains("nothing was charged"));
    assert_eq!(setup.runs.load(Ordering::SeqCst), 0);
}
