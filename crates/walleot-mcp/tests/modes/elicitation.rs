//! ELICITATION on MCP 2025-11-25: the server asks the client to show the link.

use crate::support::*;
use rmcp::model::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use walleot_mcp::Mode;
use walleot_server::testing::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_elicitation_shows_the_link_and_runs_once_paid() {
    let setup = Setup::start(Mode::Elicitation).await;
    let recorder = Recorder::eliciting(&setup, true, true);
    let client = client_as(&setup, recorder.clone()).await;
    let result = call(&client, "add", json!({"a": 2, "b": 3})).await;
    assert_eq!(text(&result), "5");
    let asked = recorder.elicitations.lock().unwrap().clone();
    assert_eq!(asked.len(), 1);
    assert!(
        asked[0].starts_with("url: ") && asked[0].contains("/checkout/sess_"),
        "{asked:?}"
    );
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
    assert_eq!(setup.merchant_balance().await, 19);
    eventually(|| recorder.completions.lock().unwrap().len() == 1).await;
    assert_eq!(
        recorder.completions.lock().unwrap().len(),
        1,
        "notifications/elicitation/complete was sent"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn form_elicitation_is_used_where_url_mode_is_not_declared() {
    let setup = Setup::start(Mode::Elicitation).await;
    let recorder = Recorder::eliciting(&setup, true, false);
    let client = client_as(&setup, recorder.clone()).await;
    let result = call(&client, "premium_analysis", json!({"data": "abc"})).await;
    assert_eq!(text(&result), "3 characters");
    let asked = recorder.elicitations.lock().unwrap().clone();
    assert!(
        asked[0].starts_with("form: ") && asked[0].contains("0.50 USD"),
        "{asked:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_declined_elicitation_charges_nothing_and_runs_nothing() {
    let setup = Setup::start(Mode::Elicitation).await;
    let recorder = Recorder {
        decline: true,
        ..Recorder::eliciting(&setup, true, true)
    };
    let client = client_as(&setup, recorder).await;
    let result = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(result.is_error, Some(true));
    assert!(text(&result).contains("declined"));
    assert_eq!(setup.runs.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_elicitation_or_two_steps_from_the_client_capabilities() {
    let setup = Setup::start(Mode::Auto).await;
    let eliciting = Recorder::eliciting(&setup, true, true);
    let client = client_as(&setup, eliciting.clone()).await;
    assert_eq!(
        text(&call(&client, "add", json!({"a": 1, "b": 1})).await),
        "2"
    );
    assert_eq!(eliciting.elicitations.lock().unwrap().len(), 1);

    let plain = Recorder::default();
    let client = client_as(&setup, plain.clone()).await;
    let first = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(structured(&first)["status"], "payment_required");
    assert!(structured(&first)["nextStep"]
        .as_str()
        .unwrap()
        .contains("confirm_add_payment"));
    assert!(plain.elicitations.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_http_cannot_elicit_so_it_answers_two_steps_or_error_32042() {
    let service = TestServer::start().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let (url, _server) = serve_mcp_with(
        paywall(&service, Mode::Elicitation, None),
        runs.clone(),
        stateless(),
    )
    .await;
    let recorder = Recorder {
        elicitation: Some(ElicitationCapability::new().with_url(UrlElicitationCapability::new())),
        ..Recorder::default()
    };
    let client = client_as_url(&url, recorder.clone()).await;

    // Statelessly the server cannot see capabilities declared at initialize: two steps.
    let plain = call(&client, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(structured(&plain)["status"], "payment_required");

    // A client that declares URL elicitation with its request is told to open the link.
    let mut meta = MetaObject::new();
    meta.insert(
        "io.modelcontextprotocol/clientCapabilities".into(),
        json!({"elicitation": {"url": {}}}),
    );
    let mut params =
        CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 2})));
    params.meta = Some(RequestMetaObject(meta));
    let error = client.call_tool(params).await.unwrap_err();
    let rmcp::ServiceError::McpError(data) = error else {
        panic!("expected an MCP error, got {error:?}");
    };
    assert_eq!(data.code.0, -32042);
    let elicitation = &data.data.unwrap()["elicitations"][0];
    assert_eq!(elicitation["mode"], "url");
    assert!(elicitation["url"]
        .as_str()
        .unwrap()
        .contains("/checkout/sess_"));
    assert!(
        recorder.elicitations.lock().unwrap().is_empty(),
        "no elicitation request was sent"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}
