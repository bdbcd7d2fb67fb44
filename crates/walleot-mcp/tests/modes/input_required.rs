//! ELICITATION on MCP 2026-07-28: an input-required round trip with sealed state.

use crate::support::*;
use rmcp::model::*;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use walleot_mcp::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_mcp_2026_07_28_elicitation_becomes_an_input_required_round_trip() {
    let setup = Setup::start(Mode::Elicitation).await;
    let recorder = Recorder::eliciting(&setup, true, true);
    let client = recorder.clone().on_2026(&setup.mcp_url).await;
    let result = call(&client, "add", json!({"a": 7, "b": 8})).await;
    assert_eq!(text(&result), "15");
    let asked = recorder.elicitations.lock().unwrap().clone();
    assert_eq!(asked.len(), 1, "{asked:?}");
    assert!(asked[0].starts_with("url: "), "{asked:?}");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
    assert_eq!(setup.merchant_balance().await, 19);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_or_moved_request_state_runs_nothing() {
    let setup = Setup::start(Mode::Elicitation).await;
    let form_only = Recorder {
        elicitation: Some(ElicitationCapability::new().with_form(FormElicitationCapability::new())),
        ..Recorder::default()
    };
    let client = form_only.on_2026(&setup.mcp_url).await;
    // One round by hand: get the sealed state of a paid `add`.
    let first = client
        .call_tool_once(
            CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 1}))),
        )
        .await
        .unwrap();
    let CallToolResponse::InputRequired(required) = first else {
        panic!("expected an input-required result");
    };
    let state = required.request_state.clone().unwrap();
    let payment_id = state.split('.').next().unwrap().to_string();
    let shown = serde_json::to_string(&required).unwrap();
    let session = shown.split("/checkout/").nth(1).unwrap();
    let session: String = session
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert!(!shown.contains(&format!("/checkout/{payment_id}")));
    setup.pay(&session).await;
    let accept: InputResponses = [("payment".to_string(), json!({"action": "accept"}))]
        .into_iter()
        .collect();
    let retry = |tool: &str, arguments: Value, state: String| {
        let mut params =
            CallToolRequestParams::new(tool.to_string()).with_arguments(args(arguments));
        params.request_state = Some(state);
        params.input_responses = Some(accept.clone());
        client.call_tool_once(params)
    };
    let forged = format!("{payment_id}.AAAA");
    for (tool, arguments, state) in [
        ("add", json!({"a": 1, "b": 1}), forged),
        ("add", json!({"a": 50, "b": 1}), state.clone()),
        ("premium_analysis", json!({"data": "x"}), state.clone()),
    ] {
        let CallToolResponse::Complete(refused) = retry(tool, arguments, state).await.unwrap()
        else {
            panic!("expected a complete result");
        };
        assert_eq!(refused.is_error, Some(true), "{tool}");
    }
    assert_eq!(setup.runs.load(Ordering::SeqCst), 0);
    let CallToolResponse::Complete(done) =
        retry("add", json!({"b": 1, "a": 1}), state).await.unwrap()
    else {
        panic!("expected a complete result");
    };
    assert_eq!(text(&done), "2");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
}
