//! Mandates from the MCP side: a call whose caller the payer granted a mandate for runs
//! in its first round trip, in every mode, captured after success and released after
//! failure; past the budget, or for another caller, the mode's own flow asks again.

mod support;

use rmcp::model::*;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use support::*;
use walleot_api::MandatePeriod;
use walleot_mcp::{Mode, Walleot};
use walleot_server::domain::mandates::{Grant, MandateLimits};
use walleot_server::domain::payers::ApprovalMethod;
use walleot_server::testing::TestServer;

/// A payer pays a first session of `customer` and grants its merchant a mandate:
/// `per_call` and `per_day` in cents. Answers the mandate's id.
async fn grant(service: &TestServer, customer: &str, per_call: i64, per_day: i64) -> String {
    let created: Value = reqwest::Client::new()
        .post(format!("{}/v1/sessions", service.base_url))
        .bearer_auth(&service.test_key)
        .json(&json!({"amount": 19, "currency": "usd", "customer": customer}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["sessionId"].as_str().unwrap();
    let wallets = service.wallets();
    let payer = wallets.register().await.unwrap();
    wallets
        .pay(
            &service.session(id).await,
            &payer.id,
            ApprovalMethod::Auto,
            None,
        )
        .await
        .unwrap();
    let limits =
        MandateLimits::new(Some(per_call), Some((MandatePeriod::Day, per_day)), None).unwrap();
    service
        .mandates()
        .grant(Grant {
            payer_id: payer.id,
            session_id: id.to_string(),
            limits,
            expires_at: None,
        })
        .await
        .unwrap()
        .id
}

fn status_of(result: &CallToolResult) -> String {
    structured(result)["status"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn payment_meta(result: &CallToolResult) -> Value {
    let meta = result.meta.as_ref().expect("a paid result carries _meta");
    meta.0.get("payment").cloned().unwrap_or(Value::Null)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_covered_call_runs_in_its_first_round_trip_in_every_mode() {
    let service = TestServer::start().await;
    // The server authenticates its users: the bearer is the subject, and so the customer.
    let mandate = grant(&service, "Bearer agent-7", 50, 1_000).await;
    for mode in [
        Mode::TwoStep,
        Mode::Resubmit,
        Mode::Elicitation,
        Mode::Progress,
        Mode::DynamicTools,
        Mode::Auto,
    ] {
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let walleot = paywall(&service, mode, None).identify(bearer_subject());
        let (url, _server) = serve_mcp(walleot, runs.clone()).await;
        let agent = client_with_token(&url, "agent-7").await;
        let done = call(&agent, "add", json!({"a": 2, "b": 3})).await;
        assert_eq!(text(&done), "5", "{mode}: {}", text(&done));
        assert_ne!(done.is_error, Some(true), "{mode}");
        let paid = payment_meta(&done);
        assert_eq!(paid["mandateId"], mandate.as_str(), "{mode}");
        assert_eq!(
            (paid["amountMinor"].as_i64(), paid["currency"].as_str()),
            (Some(19), Some("USD"))
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{mode}: ran once");
        // Listed confirm tools stay as they were: nothing was left open.
        if mode == Mode::DynamicTools {
            let names: Vec<String> = agent
                .list_all_tools()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            assert!(
                !names.contains(&"confirm_add_payment".to_string()),
                "{names:?}"
            );
        }
    }
    let read: Value = reqwest::Client::new()
        .get(format!("{}/v1/mandates/{mandate}", service.base_url))
        .bearer_auth(&service.test_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(read["spentTotal"], 6 * 19, "captured, every one: {read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn past_the_budget_for_another_caller_or_after_a_failure_the_flow_asks_again() {
    let service = TestServer::start().await;
    let mandate = grant(&service, "Bearer agent-8", 20, 40).await;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let walleot = paywall(&service, Mode::TwoStep, None).identify(bearer_subject());
    let (url, _server) = serve_mcp(walleot, runs.clone()).await;
    let agent = client_with_token(&url, "agent-8").await;

    // A tool that fails costs nothing, and gives the budget back.
    let failed = call(&agent, "flaky", json!({})).await;
    assert_eq!(failed.is_error, Some(true), "{}", text(&failed));
    assert_eq!(payment_meta(&failed)["mandateId"], mandate.as_str());
    assert!(
        payment_meta(&failed)["amountMinor"].is_null(),
        "a failed call names no amount charged"
    );
    let session = service
        .session(&session_id_of_payment(&service, &mandate).await)
        .await;
    assert_eq!(
        session.capture_status,
        Some(walleot_api::CaptureStatus::Released)
    );

    // Per call: premium_analysis (0.50) is over 0.20: a link, as without a mandate.
    let dear = call(&agent, "premium_analysis", json!({"data": "x"})).await;
    assert_eq!(status_of(&dear), "payment_required");
    // The day's 0.40 covers two adds of 0.19, not a third.
    let statuses = [
        call(&agent, "add", json!({"a": 1, "b": 1})).await,
        call(&agent, "add", json!({"a": 1, "b": 2})).await,
        call(&agent, "add", json!({"a": 1, "b": 3})).await,
    ]
    .iter()
    .map(|r| {
        if payment_meta_or_null(r).is_null() {
            status_of(r)
        } else {
            "ran".to_string()
        }
    })
    .collect::<Vec<_>>();
    assert_eq!(statuses, ["ran", "ran", "payment_required"]);

    // Another caller of the same server is not covered.
    let other = client_with_token(&url, "agent-9").await;
    let asked = call(&other, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(status_of(&asked), "payment_required");
    assert_eq!(runs.load(Ordering::SeqCst), 3, "flaky once, add twice");
}

fn payment_meta_or_null(result: &CallToolResult) -> Value {
    result
        .meta
        .as_ref()
        .and_then(|m| m.0.get("payment").cloned())
        .unwrap_or(Value::Null)
}

/// The newest session paid under `mandate`.
async fn session_id_of_payment(service: &TestServer, mandate: &str) -> String {
    let page: Value = reqwest::Client::new()
        .get(format!("{}/v1/sessions?limit=100", service.base_url))
        .bearer_auth(&service.test_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    page["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["mandateId"] == mandate)
        .and_then(|s| s["sessionId"].as_str())
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stdio_server_names_its_installation_and_http_without_a_subject_names_nobody() {
    use rmcp::transport::{ConfigureCommandExt, TokioChildProcess};
    let service = TestServer::start().await;
    let state = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("walleot-state-{}", uuid::Uuid::new_v4()));
    let spawn = || {
        let (url, key, dir) = (
            service.base_url.clone(),
            service.test_key.clone(),
            state.clone(),
        );
        TokioChildProcess::new(tokio::process::Command::new(example_binary()).configure(
            move |cmd| {
                cmd.env("WALLEOT_API_URL", &url)
                    .env("WALLEOT_API_KEY", &key)
                    .env("WALLEOT_STATE_DIR", &dir)
                    .env_remove("WALLEOT_CUSTOMER")
                    .env("RUST_LOG", "error");
            },
        ))
        .unwrap()
    };
    // The first run makes the installation's reference; the next run reads it back.
    let mut customers = Vec::new();
    for _ in 0..2 {
        let agent = Recorder::default().serve(spawn()).await.unwrap();
        let asked = call(&agent, "add", json!({"a": 1, "b": 1})).await;
        let session = service.session(&session_of(&asked)).await;
        customers.push(
            session
                .customer
                .expect("a stdio payment names the installation"),
        );
        agent.cancel().await.unwrap();
    }
    assert_eq!(customers[0], customers[1]);
    assert!(customers[0].starts_with("inst_"), "{customers:?}");
    let kept = std::fs::read_to_string(state.join("customer")).unwrap();
    assert_eq!(kept.trim(), customers[0]);

    // Once the payer grants it a mandate, that installation's calls just run.
    let mandate = grant(&service, &customers[0], 50, 500).await;
    let agent = Recorder::default().serve(spawn()).await.unwrap();
    let done = call(&agent, "add", json!({"a": 20, "b": 22})).await;
    assert_eq!(text(&done), "42");
    assert_eq!(payment_meta(&done)["mandateId"], mandate.as_str());
    agent.cancel().await.unwrap();

    // Over HTTP without `identify`, nobody is named: no mandate applies.
    let walleot = Walleot::new(&service.base_url, &service.test_key)
        .unwrap()
        .customer(&customers[0])
        .price("add", "0.19", "USD")
        .unwrap();
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let (url, _server) = serve_mcp(walleot, runs).await;
    let http = client_with_token(&url, "anyone").await;
    let asked = call(&http, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(status_of(&asked), "payment_required");
    assert!(service
        .session(&session_of(&asked))
        .await
        .customer
        .is_none());
}
