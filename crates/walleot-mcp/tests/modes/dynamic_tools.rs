//! DYNAMIC_TOOLS: the confirm tool shows for its caller while a payment is open.

use crate::support::*;
use rmcp::model::*;
use serde_json::json;
use std::sync::atomic::Ordering;
use walleot_mcp::Mode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_tools_offer_the_confirm_tool_only_while_a_payment_is_open() {
    let setup = Setup::start(Mode::DynamicTools).await;
    let recorder = Recorder::default();
    let client = client_as(&setup, recorder.clone()).await;
    let names = |tools: Vec<Tool>| {
        tools
            .into_iter()
            .map(|t| t.name.to_string())
            .collect::<Vec<_>>()
    };
    assert!(
        !names(client.list_all_tools().await.unwrap()).contains(&"confirm_add_payment".to_string())
    );
    let answer = call(&client, "add", json!({"a": 4, "b": 4})).await;
    let payment_id = payment_id_of(&answer);
    assert!(
        names(client.list_all_tools().await.unwrap()).contains(&"confirm_add_payment".to_string())
    );
    // Another session does not see this session's confirm tool.
    let other = setup.client().await;
    assert!(
        !names(other.list_all_tools().await.unwrap()).contains(&"confirm_add_payment".to_string())
    );
    setup.pay(&session_of(&answer)).await;
    assert_eq!(
        text(
            &call(
                &client,
                "confirm_add_payment",
                json!({"payment_id": payment_id})
            )
            .await
        ),
        "8"
    );
    assert!(
        !names(client.list_all_tools().await.unwrap()).contains(&"confirm_add_payment".to_string())
    );
    eventually(|| recorder.list_changes.load(Ordering::SeqCst) >= 2).await;
    assert_eq!(
        recorder.list_changes.load(Ordering::SeqCst),
        2,
        "list_changed when it appears and when it goes"
    );
}
