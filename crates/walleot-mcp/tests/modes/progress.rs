//! PROGRESS: the link streams in progress notifications while the call waits.

use crate::support::*;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::json;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use walleot_mcp::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_streams_the_link_and_runs_when_paid() {
    let setup = Arc::new(Setup::start(Mode::Progress).await);
    let recorder = Recorder::default();
    let client = recorder
        .clone()
        .serve(StreamableHttpClientTransport::from_uri(
            setup.mcp_url.clone(),
        ))
        .await
        .unwrap();
    // The payer pays once the link has been shown.
    let payer = pay_when_shown(recorder.progress.clone(), {
        let (url, key) = (
            setup.service.base_url.clone(),
            setup.service.test_key.clone(),
        );
        move |message: String| async move {
            pay_linked(url, key, message.clone()).await;
            message
        }
    });
    let result = call(&client, "add", json!({"a": 5, "b": 6})).await;
    let message = payer.await.unwrap();
    assert!(
        message.contains("0.19 USD") && message.contains("/checkout/sess_"),
        "{message}"
    );
    assert_eq!(text(&result), "11");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
    assert_eq!(setup.merchant_balance().await, 19);
}
