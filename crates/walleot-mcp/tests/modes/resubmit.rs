//! RESUBMIT: the retry with the payment id runs only the arguments that were paid for.

use crate::support::*;
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use walleot_mcp::Mode;
use walleot_server::testing::TestServer;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resubmit_runs_only_the_paid_arguments() {
    let setup = Setup::start(Mode::Resubmit).await;
    let client = setup.client().await;
    let tools = client.list_all_tools().await.unwrap();
    let add = tools.iter().find(|t| t.name == "add").unwrap();
    assert!(add.input_schema["properties"].get("payment_id").is_some());
    assert!(!tools.iter().any(|t| t.name.starts_with("confirm_")));

    let first = call(&client, "add", json!({"a": 1, "b": 2})).await;
    assert_eq!(
        first.is_error,
        Some(true),
        "the first call answers an error carrying the link"
    );
    let payment_id = payment_id_of(&first);
    setup.pay(&session_of(&first)).await;
    let other_args = call(
        &client,
        "add",
        json!({"a": 100, "b": 2, "payment_id": payment_id}),
    )
    .await;
    assert_eq!(other_args.is_error, Some(true));
    assert_eq!(
        setup.runs.load(Ordering::SeqCst),
        0,
        "other arguments do not run on the old payment"
    );
    let other_tool = call(
        &client,
        "premium_analysis",
        json!({"data": "x", "payment_id": payment_id}),
    )
    .await;
    assert_eq!(other_tool.is_error, Some(true));
    let same = call(
        &client,
        "add",
        json!({"b": 2, "a": 1, "payment_id": payment_id}),
    )
    .await;
    assert_eq!(text(&same), "3");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_persistent_store_survives_a_restart_of_the_mcp_server() {
    let service = TestServer::start().await;
    let dir = std::env::temp_dir().join(format!("walleot-mcp-restart-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("payments.db");
    let runs = Arc::new(AtomicUsize::new(0));
    let store = Arc::new(walleot_mcp::store::SqliteStore::open(&path).await.unwrap());
    let first = paywall(&service, Mode::Resubmit, None)
        .store(store)
        .identify(bearer_subject());
    let (url, server) = serve_mcp(first, runs.clone()).await;
    let client = client_with_token(&url, "alice-token").await;
    let required = call(&client, "add", json!({"a": 1, "b": 2})).await;
    let payment_id = payment_id_of(&required);
    drop(client);
    server.abort();
    pay_with(&service, &session_of(&required)).await;

    let store = Arc::new(walleot_mcp::store::SqliteStore::open(&path).await.unwrap());
    let second = paywall(&service, Mode::Resubmit, None)
        .store(store)
        .identify(bearer_subject());
    let (url, _server) = serve_mcp(second, runs.clone()).await;
    let mallory = client_with_token(&url, "mallory-token").await;
    let stolen = call(
        &mallory,
        "add",
        json!({"a": 1, "b": 2, "payment_id": payment_id}),
    )
    .await;
    assert_eq!(
        stolen.is_error,
        Some(true),
        "another subject cannot use the payment"
    );
    let alice = client_with_token(&url, "alice-token").await;
    let done = call(
        &alice,
        "add",
        json!({"a": 1, "b": 2, "payment_id": payment_id}),
    )
    .await;
    assert_eq!(text(&done), "3");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
