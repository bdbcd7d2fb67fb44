//! Every mode over every transport: stdio (the example binary), stateful and stateless
//! HTTP, both MCP revisions, the real checkout pages, and instances sharing a store.

use crate::support::*;
use rmcp::model::*;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use walleot_mcp::Mode;
use walleot_server::testing::{CheckoutPayer, TestServer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_is_paid_over_stdio() {
    let service = TestServer::start().await;
    let child = example_child(&service, "two-step");
    let client = Recorder::default().serve(child).await.unwrap();
    let tools = client.list_all_tools().await.unwrap();
    let names: Vec<_> = tools.iter().map(|t| t.name.to_string()).collect();
    for name in [
        "ping",
        "add",
        "premium_analysis",
        "confirm_add_payment",
        "confirm_premium_analysis_payment",
    ] {
        assert!(names.contains(&name.to_string()), "{names:?}");
    }
    assert_eq!(text(&call(&client, "ping", json!({})).await), "pong");
    let required = call(
        &client,
        "premium_analysis",
        json!({"data": "one two three"}),
    )
    .await;
    let payment_id = payment_id_of(&required);
    assert_eq!(structured(&required)["amountMinor"], 50);
    pay_with(&service, &session_of(&required)).await;
    let done = call(
        &client,
        "confirm_premium_analysis_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(text(&done), "3 words, 13 characters");
    client.cancel().await.unwrap();
}

/// Every mode, paid by a payer through the real checkout pages (a passkey wallet,
/// auto-approval under its limit, one assertion above it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_is_paid_through_the_real_checkout() {
    for mode in [
        Mode::TwoStep,
        Mode::Resubmit,
        Mode::Elicitation,
        Mode::Progress,
        Mode::DynamicTools,
        Mode::Auto,
    ] {
        let setup = Arc::new(Setup::start(mode).await);
        let payer = Arc::new(tokio::sync::Mutex::new(
            CheckoutPayer::register(&setup.service.public_url).await,
        ));
        // 0.19 USD is under the default 0.20 limit: paid as the page opens. 0.50 USD takes a tap.
        let (tool, arguments, expected) = match mode {
            Mode::Resubmit | Mode::Auto => {
                ("premium_analysis", json!({"data": "abcd"}), "4 characters")
            }
            _ => ("add", json!({"a": 20, "b": 1}), "21"),
        };
        let result = match mode {
            Mode::TwoStep | Mode::DynamicTools => {
                let client = setup.client().await;
                let required = structured(&call(&client, tool, arguments).await);
                assert_eq!(
                    payer
                        .lock()
                        .await
                        .pay(required["paymentUrl"].as_str().unwrap())
                        .await,
                    "paid",
                    "{mode}"
                );
                call(
                    &client,
                    &format!("confirm_{tool}_payment"),
                    json!({"payment_id": required["paymentId"]}),
                )
                .await
            }
            Mode::Resubmit => {
                let client = setup.client().await;
                let required = structured(&call(&client, tool, arguments.clone()).await);
                assert_eq!(
                    payer
                        .lock()
                        .await
                        .pay(required["paymentUrl"].as_str().unwrap())
                        .await,
                    "paid",
                    "{mode}"
                );
                let mut retry = arguments.as_object().unwrap().clone();
                retry.insert("payment_id".into(), required["paymentId"].clone());
                call(&client, tool, Value::Object(retry)).await
            }
            Mode::Elicitation | Mode::Auto => {
                let recorder = Recorder {
                    checkout: Some(payer.clone()),
                    ..Recorder::eliciting(&setup, true, true)
                };
                call(&client_as(&setup, recorder).await, tool, arguments).await
            }
            Mode::Progress => {
                let recorder = Recorder::default();
                let client = client_as(&setup, recorder.clone()).await;
                let payer = payer.clone();
                let paying = pay_when_shown(
                    recorder.progress.clone(),
                    move |message: String| async move {
                        let url = message.split("open ").nth(1).unwrap().to_string();
                        payer.lock().await.pay(&url).await
                    },
                );
                let result = call(&client, tool, arguments).await;
                assert_eq!(paying.await.unwrap(), "paid");
                result
            }
        };
        assert_eq!(text(&result), expected, "{mode}");
        assert_eq!(setup.runs.load(Ordering::SeqCst), 1, "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stateless_http_binds_payments_to_the_authenticated_subject() {
    let service = TestServer::start().await;
    let runs = Arc::new(AtomicUsize::new(0));
    let walleot = paywall(&service, Mode::TwoStep, None).identify(bearer_subject());
    let (url, _server) = serve_mcp_with(walleot, runs.clone(), stateless()).await;
    let alice = client_with_token(&url, "alice-token").await;
    let answer = call(&alice, "add", json!({"a": 3, "b": 3})).await;
    let payment_id = payment_id_of(&answer);
    pay_with(&service, &session_of(&answer)).await;
    let mallory = client_with_token(&url, "mallory-token").await;
    let stolen = call(
        &mallory,
        "confirm_add_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(stolen.is_error, Some(true));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    let done = call(
        &alice,
        "confirm_add_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(text(&done), "6");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_works_on_an_mcp_2026_07_28_session_over_stdio() {
    let service = TestServer::start().await;
    let payer = Some((service.base_url.clone(), service.test_key.clone()));

    // TWO_STEP and DYNAMIC_TOOLS: the confirm tool, announced on the listen stream.
    for mode in ["two-step", "dynamic-tools"] {
        let client = example_on_2026(&service, mode, Recorder::default()).await;
        let mut changes = if mode == "dynamic-tools" {
            Some(
                client
                    .listen(SubscriptionFilter::builder().tools_list_changed().build())
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        let required = structured(&call(&client, "add", json!({"a": 2, "b": 5})).await);
        let payment_id = required["paymentId"].as_str().unwrap().to_string();
        let session = session_in(&required);
        if let Some(changes) = &mut changes {
            let change = tokio::time::timeout(Duration::from_secs(5), changes.next()).await;
            assert!(
                matches!(change, Ok(Ok(Some(_)))),
                "{mode}: the list change arrives: {change:?}"
            );
            let names: Vec<_> = client
                .list_all_tools()
                .await
                .unwrap()
                .into_iter()
                .map(|t| t.name.to_string())
                .collect();
            assert!(
                names.contains(&"confirm_add_payment".to_string()),
                "{names:?}"
            );
        }
        pay_with(&service, &session).await;
        let done = call(
            &client,
            "confirm_add_payment",
            json!({"payment_id": payment_id}),
        )
        .await;
        assert_eq!(text(&done), "7", "{mode}");
        client.cancel().await.unwrap();
    }

    // RESUBMIT.
    let client = example_on_2026(&service, "resubmit", Recorder::default()).await;
    let first = call(&client, "add", json!({"a": 1, "b": 1})).await;
    let payment_id = payment_id_of(&first);
    pay_with(&service, &session_of(&first)).await;
    assert_eq!(
        text(
            &call(
                &client,
                "add",
                json!({"a": 1, "b": 1, "payment_id": payment_id})
            )
            .await
        ),
        "2"
    );
    client.cancel().await.unwrap();

    // ELICITATION: an input-required round trip answered by the payer.
    let recorder = Recorder {
        elicitation: Some(ElicitationCapability::new().with_url(UrlElicitationCapability::new())),
        payer: payer.clone(),
        ..Recorder::default()
    };
    let client = example_on_2026(&service, "elicitation", recorder.clone()).await;
    assert_eq!(
        text(&call(&client, "add", json!({"a": 4, "b": 4})).await),
        "8"
    );
    assert_eq!(recorder.elicitations.lock().unwrap().len(), 1);
    client.cancel().await.unwrap();

    // PROGRESS: the link arrives in progress notifications; the call ends once paid.
    let recorder = Recorder::default();
    let client = example_on_2026(&service, "progress", recorder.clone()).await;
    let (url, key) = (service.base_url.clone(), service.test_key.clone());
    let paying = pay_when_shown(recorder.progress.clone(), move |message| {
        pay_linked(url, key, message)
    });
    assert_eq!(
        text(&call(&client, "add", json!({"a": 10, "b": 1})).await),
        "11"
    );
    paying.await.unwrap();
    client.cancel().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_works_on_an_mcp_2025_11_25_session_over_stdio() {
    let service = TestServer::start().await;
    for mode in MODES {
        let child = example_child(&service, mode);
        let recorder = recorder_for(mode, &service);
        let client = recorder.clone().serve(child).await.unwrap();
        assert_eq!(
            paid_add(true, mode, &client, &recorder, &service).await,
            "7",
            "{mode}"
        );
        client.cancel().await.unwrap();
    }
}

/// Every mode over stateless HTTP, on MCP 2026-07-28 (`newer`) or 2025-11-25, with
/// payments bound to the bearer token's subject.
async fn stateless_matrix(newer: bool) {
    use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let service = TestServer::start().await;
    for mode in MODES {
        let runs = Arc::new(AtomicUsize::new(0));
        let walleot = paywall(&service, mode.parse().unwrap(), None).identify(bearer_subject());
        let (url, _server) = serve_mcp_with(walleot, runs.clone(), stateless()).await;
        let recorder = recorder_for(mode, &service);
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url)
                .auth_header("payer-token".to_string()),
        );
        let client = if newer {
            let lifecycle = ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            };
            recorder
                .clone()
                .serve_with_lifecycle(transport, lifecycle)
                .await
                .unwrap()
        } else {
            recorder.clone().serve(transport).await.unwrap()
        };
        // On 2025-11-25 a stateless server cannot send elicitations: two steps instead.
        assert_eq!(
            paid_add(newer, mode, &client, &recorder, &service).await,
            "7",
            "{mode}"
        );
        assert_eq!(runs.load(Ordering::SeqCst), 1, "{mode}");
        if !newer {
            assert!(
                recorder.elicitations.lock().unwrap().is_empty(),
                "{mode}: no server request on stateless HTTP"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_works_on_an_mcp_2026_07_28_session_over_stateless_http() {
    stateless_matrix(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mode_works_on_an_mcp_2025_11_25_session_over_stateless_http() {
    stateless_matrix(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_server_instances_share_payments_through_one_store_file() {
    let service = TestServer::start().await;
    let dir = std::env::temp_dir().join(format!("walleot-mcp-shared-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("payments.db");
    let runs = Arc::new(AtomicUsize::new(0));
    let mut urls = Vec::new();
    for _ in 0..2 {
        // Each instance opens the file itself, as separate processes would.
        let store = Arc::new(walleot_mcp::store::SqliteStore::open(&path).await.unwrap());
        let walleot = paywall(&service, Mode::TwoStep, None)
            .store(store)
            .identify(bearer_subject());
        urls.push(serve_mcp(walleot, runs.clone()).await.0);
    }
    let on_a = client_with_token(&urls[0], "carol-token").await;
    let on_b = client_with_token(&urls[1], "carol-token").await;
    let answer = call(&on_a, "add", json!({"a": 9, "b": 9})).await;
    let payment_id = payment_id_of(&answer);
    pay_with(&service, &session_of(&answer)).await;
    let confirm = || json!({"payment_id": payment_id});
    let (from_a, from_b) = tokio::join!(
        call(&on_a, "confirm_add_payment", confirm()),
        call(&on_b, "confirm_add_payment", confirm())
    );
    assert_eq!(
        (text(&from_a), text(&from_b)),
        ("18".to_string(), "18".to_string())
    );
    assert_eq!(
        runs.load(Ordering::SeqCst),
        1,
        "the tool ran once across both instances"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
