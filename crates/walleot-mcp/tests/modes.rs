//! End to end: the real Walleot service on a random port, an rmcp server with priced
//! tools served over streamable HTTP, and a real rmcp client. The payer pays through the
//! service's test helper (a sandbox payer, through the ledger).

mod support;

use rmcp::model::*;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;
use support::*;
use walleot_mcp::Mode;
use walleot_server::testing::{CheckoutPayer, TestServer};

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
async fn on_mcp_2026_07_28_elicitation_becomes_an_input_required_round_trip() {
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let setup = Setup::start(Mode::Elicitation).await;
    let recorder = Recorder::eliciting(&setup, true, true);
    let client = recorder
        .clone()
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(setup.mcp_url.clone()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
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
    use rmcp::{ClientLifecycleMode, ClientServiceExt};
    let setup = Setup::start(Mode::Elicitation).await;
    let form_only = Recorder {
        elicitation: Some(ElicitationCapability::new().with_form(FormElicitationCapability::new())),
        ..Recorder::default()
    };
    let client = form_only
        .serve_with_lifecycle(
            StreamableHttpClientTransport::from_uri(setup.mcp_url.clone()),
            ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        )
        .await
        .unwrap();
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
