//! What every mode guarantees about the money and the work, tested from outside as
//! clients and attackers would use the server: results only after capture, payment ids
//! that only their holder can use, caps that keep one caller from spending everyone's
//! budget or memory, arguments checked before money is asked for, and waits that see a
//! payment at once.

mod support;

use rmcp::model::*;
use rmcp::ServiceExt;
use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};
use support::*;
use walleot_mcp::Mode;
use walleot_server::testing::TestServer;

/// A service whose keys may make `posts` POSTs a minute (session creations, pays,
/// captures).
async fn service_allowing(posts: u32) -> TestServer {
    TestServer::start_with(|config| config.limits.sessions_per_window = posts).await
}

/// Spends the rest of the key's POST budget, until the service answers 429.
async fn exhaust_posts(setup: &Setup) {
    for _ in 0..200 {
        let answer = setup
            .http
            .post(format!("{}/v1/sessions", setup.service.base_url))
            .bearer_auth(&setup.service.test_key)
            .json(&json!({"amount": 100, "currency": "usd"}))
            .send()
            .await
            .unwrap();
        if answer.status() == 429 {
            return;
        }
    }
    panic!("the service never rate limited");
}

fn status_of(result: &CallToolResult) -> Value {
    structured(result)["status"].clone()
}

/// How many sessions the merchant's test key has created.
async fn sessions_created(setup: &Setup) -> usize {
    let list: Value = setup
        .http
        .get(format!("{}/v1/sessions?limit=100", setup.service.base_url))
        .bearer_auth(&setup.service.test_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list["data"].as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_result_is_handed_out_only_after_its_capture_succeeds() {
    let service = service_allowing(6).await;
    let walleot = paywall(&service, Mode::TwoStep, None);
    let setup = Setup::serve(service, walleot).await;
    let client = setup.client().await;
    let answer = call(&client, "add", json!({"a": 1, "b": 2})).await;
    let (payment_id, session) = (payment_id_of(&answer), session_of(&answer));
    setup.pay(&session).await;
    exhaust_posts(&setup).await;

    let confirm = || {
        call(
            &client,
            "confirm_add_payment",
            json!({"payment_id": payment_id}),
        )
    };
    for _ in 0..2 {
        let waiting = confirm().await;
        assert_eq!(status_of(&waiting), "settling", "{}", text(&waiting));
        assert_eq!(waiting.is_error, Some(true));
        assert_ne!(text(&waiting), "3", "no result before the capture");
        assert!(structured(&waiting)["retryAfter"].as_u64().unwrap() >= 1);
        assert_eq!(setup.session(&session).await["captureStatus"], "held");
    }
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1, "the tool ran once");

    // The service's window resets: the next confirmation captures and hands it out.
    setup.service.clock.advance_ms(61_000);
    assert_eq!(text(&confirm().await), "3");
    assert_eq!(setup.session(&session).await["captureStatus"], "captured");
    assert_eq!(setup.merchant_balance().await, 19);
    assert_eq!(text(&confirm().await), "3", "then kept");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_caller_cannot_spend_the_merchant_keys_budget_for_everyone() {
    let service = service_allowing(5).await;
    let walleot = paywall(&service, Mode::TwoStep, None).max_open_per_caller(3);
    let setup = Setup::serve(service, walleot).await;
    let greedy = setup.client().await;
    let mut statuses = Vec::new();
    for a in 0..5 {
        statuses.push(status_of(
            &call(&greedy, "add", json!({"a": a, "b": 1})).await,
        ));
    }
    assert_eq!(
        statuses,
        [
            "payment_required",
            "payment_required",
            "payment_required",
            "refused",
            "refused"
        ]
    );
    let refused = call(&greedy, "add", json!({"a": 9, "b": 1})).await;
    assert!(
        text(&refused).contains("unpaid payments are open"),
        "{}",
        text(&refused)
    );
    assert_eq!(
        sessions_created(&setup).await,
        3,
        "refusals never reach the service"
    );
    let other = setup.client().await;
    let fair = call(&other, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(status_of(&fair), "payment_required", "{}", text(&fair));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_service_is_reported_with_its_wait() {
    let service = service_allowing(2).await;
    let walleot = paywall(&service, Mode::TwoStep, None);
    let setup = Setup::serve(service, walleot).await;
    exhaust_posts(&setup).await;
    let client = setup.client().await;
    let limited = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(status_of(&limited), "rate_limited");
    let said = text(&limited);
    assert!(
        said.contains("rate limited by the payment service, retry in"),
        "{said}"
    );
    assert!(!said.contains("could not be reached"), "{said}");
    let wait = structured(&limited)["retryAfter"].as_u64().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_stateless_http_the_payment_id_not_the_link_is_the_right_to_confirm() {
    let service = TestServer::start().await;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let walleot = paywall(&service, Mode::TwoStep, None);
    let (url, _server) = serve_mcp_with(walleot, runs.clone(), stateless()).await;
    let alice = client_as_url(&url, Recorder::default()).await;
    let answer = call(&alice, "add", json!({"a": 5, "b": 5})).await;
    let (payment_id, session) = (payment_id_of(&answer), session_of(&answer));
    assert!(!structured(&answer)["paymentUrl"]
        .as_str()
        .unwrap()
        .contains(&payment_id));
    pay_with(&service, &session).await;

    // Anyone the checkout link reached knows the session id; it takes nothing.
    let mallory = client_as_url(&url, Recorder::default()).await;
    for guess in [session.clone(), format!("pay_{}", &session[5..])] {
        let stolen = call(
            &mallory,
            "confirm_add_payment",
            json!({"payment_id": guess}),
        )
        .await;
        assert_eq!(status_of(&stolen), "refused", "{guess}");
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);

    // A one-shot client that comes back later holds the payment id: it confirms.
    drop(alice);
    let again = client_as_url(&url, Recorder::default()).await;
    let done = call(
        &again,
        "confirm_add_payment",
        json!({"payment_id": payment_id}),
    )
    .await;
    assert_eq!(text(&done), "10");
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

fn tool_names(tools: Vec<Tool>) -> Vec<String> {
    tools.into_iter().map(|t| t.name.to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_tools_on_stateless_http_never_show_one_callers_confirm_tools_to_another() {
    let service = TestServer::start().await;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));

    // Subjects told apart: each sees only its own confirm tool.
    let walleot = paywall(&service, Mode::DynamicTools, None).identify(bearer_subject());
    let (url, _server) = serve_mcp_with(walleot, runs.clone(), stateless()).await;
    let alice = client_with_token(&url, "alice-token").await;
    let bob = client_with_token(&url, "bob-token").await;
    call(&alice, "add", json!({"a": 1, "b": 1})).await;
    let confirm = "confirm_add_payment".to_string();
    assert!(tool_names(alice.list_all_tools().await.unwrap()).contains(&confirm));
    assert!(!tool_names(bob.list_all_tools().await.unwrap()).contains(&confirm));

    // Anonymous callers cannot be told apart: what they see never depends on another
    // caller's payments.
    let walleot = paywall(&service, Mode::DynamicTools, None);
    let (url, _server) = serve_mcp_with(walleot, runs.clone(), stateless()).await;
    let first = client_as_url(&url, Recorder::default()).await;
    let second = client_as_url(&url, Recorder::default()).await;
    let before = tool_names(second.list_all_tools().await.unwrap());
    call(&first, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(tool_names(second.list_all_tools().await.unwrap()), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_http_callers_are_told_apart_by_their_credential() {
    // No `identify`: the server does not know who the bearer is, yet one credential is
    // one caller for the cap and the confirm tools it sees.
    let service = TestServer::start().await;
    let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let walleot = paywall(&service, Mode::DynamicTools, None).max_open_per_caller(2);
    let (url, _server) = serve_mcp_with(walleot, runs, stateless()).await;
    let alice = client_with_token(&url, "alice-token").await;
    let bob = client_with_token(&url, "bob-token").await;
    let confirm = "confirm_add_payment".to_string();
    assert!(!tool_names(alice.list_all_tools().await.unwrap()).contains(&confirm));
    let first = call(&alice, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(status_of(&first), "payment_required", "{}", text(&first));
    assert!(tool_names(alice.list_all_tools().await.unwrap()).contains(&confirm));
    assert!(!tool_names(bob.list_all_tools().await.unwrap()).contains(&confirm));

    call(&alice, "add", json!({"a": 2, "b": 1})).await;
    let refused = call(&alice, "add", json!({"a": 3, "b": 1})).await;
    assert_eq!(status_of(&refused), "refused");
    assert!(
        text(&refused).contains("2 unpaid payments are open"),
        "{}",
        text(&refused)
    );
    let fair = call(&bob, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(status_of(&fair), "payment_required", "{}", text(&fair));

    // The payment id, not the credential, is the right to confirm.
    pay_with(&service, &session_of(&first)).await;
    let done = call(
        &bob,
        "confirm_add_payment",
        json!({"payment_id": payment_id_of(&first)}),
    )
    .await;
    assert_eq!(text(&done), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dynamic_tools_accept_a_repeated_confirm_and_drop_ended_payments() {
    let setup = Setup::start(Mode::DynamicTools).await;
    let client = setup.client().await;
    let confirm = "confirm_add_payment".to_string();
    let answer = call(&client, "add", json!({"a": 4, "b": 4})).await;
    let payment_id = payment_id_of(&answer);
    setup.pay(&session_of(&answer)).await;
    let args = json!({"payment_id": payment_id});
    assert_eq!(
        text(&call(&client, "confirm_add_payment", args.clone()).await),
        "8"
    );
    assert!(!tool_names(client.list_all_tools().await.unwrap()).contains(&confirm));
    // The client lost that answer and asks again: the kept result, not "tool not found".
    assert_eq!(text(&call(&client, "confirm_add_payment", args).await), "8");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 1);

    // A payment cancelled at the service takes its confirm tool with it.
    let answer = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert!(tool_names(client.list_all_tools().await.unwrap()).contains(&confirm));
    let cancelled = setup
        .http
        .post(format!(
            "{}/v1/sessions/{}/cancel",
            setup.service.base_url,
            session_of(&answer)
        ))
        .bearer_auth(&setup.service.test_key)
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.status(), 200);
    let refused = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": payment_id_of(&answer)}),
    )
    .await;
    assert_eq!(status_of(&refused), "refused");
    assert!(!tool_names(client.list_all_tools().await.unwrap()).contains(&confirm));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elicitation_on_mcp_2026_07_28_without_declared_elicitation_falls_back_to_two_steps() {
    for mode in [Mode::Elicitation, Mode::Auto] {
        let setup = Setup::start(mode).await;
        let client = Recorder::default().on_2026(&setup.mcp_url).await;
        let answer = call(&client, "add", json!({"a": 2, "b": 3})).await;
        assert_eq!(status_of(&answer), "payment_required", "{mode}");
        setup.pay(&session_of(&answer)).await;
        let done = call(
            &client,
            "confirm_add_payment",
            json!({"payment_id": payment_id_of(&answer)}),
        )
        .await;
        assert_eq!(text(&done), "5", "{mode}");
    }
}

/// The resident set size of this process, in bytes.
fn rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_calls_do_not_grow_the_server() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    let big = "word ".repeat(20_000); // 100 kB of arguments a call
    let abandon = |count: usize| {
        let (client, big) = (&client, big.clone());
        async move {
            for _ in 0..count {
                let answer = call(client, "premium_analysis", json!({"data": big})).await;
                assert_eq!(answer.is_error, Some(true));
            }
        }
    };
    abandon(100).await;
    let settled = rss();
    abandon(900).await;
    let grown = rss().saturating_sub(settled);
    assert!(
        grown < 30 << 20,
        "1,000 abandoned calls of 100 kB grew the process by {} MiB",
        grown >> 20
    );
    assert_eq!(
        sessions_created(&setup).await,
        walleot_mcp::DEFAULT_MAX_OPEN_PER_CALLER
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn arguments_are_checked_before_any_money_is_asked_for() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    for bad in [
        json!({"a": "not a number", "b": 1}),
        json!({"a": 1}),
        json!({"a": [1], "b": {}}),
    ] {
        // A tool error the model can correct, as MCP asks of input errors, not a
        // protocol error.
        let refused = call(&client, "add", bad.clone()).await;
        assert_eq!(refused.is_error, Some(true), "{bad}");
        let said = text(&refused);
        assert!(
            said.contains("invalid arguments for `add`"),
            "{bad}: {said}"
        );
        assert!(said.contains("nothing was charged"), "{bad}: {said}");
    }
    assert_eq!(sessions_created(&setup).await, 0);
    assert_eq!(
        status_of(&call(&client, "add", json!({"a": 1, "b": 2})).await),
        "payment_required"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_payment_id_says_what_became_of_the_money() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    let unknown = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": "pay_forgotten_by_a_restart"}),
    )
    .await;
    assert_eq!(status_of(&unknown), "refused");
    let said = text(&unknown);
    assert!(said.contains("Nothing is charged"), "{said}");
    assert!(said.contains("hold deadline"), "{said}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_server_keeps_payments_across_a_restart_with_a_sqlite_store() {
    let service = TestServer::start().await;
    let dir = tempfile_dir();
    let store = format!("sqlite:{}", dir.join("payments.db").display());
    let args = ["--mode", "two-step", "--store", store.as_str()];
    let client = Recorder::default()
        .serve(example_child_with(&service, &args))
        .await
        .unwrap();
    let answer = call(&client, "add", json!({"a": 20, "b": 1})).await;
    client.cancel().await.unwrap();
    pay_with(&service, &session_of(&answer)).await;
    let restarted = Recorder::default()
        .serve(example_child_with(&service, &args))
        .await
        .unwrap();
    let done = call(
        &restarted,
        "confirm_add_payment",
        json!({"payment_id": payment_id_of(&answer)}),
    )
    .await;
    assert_eq!(text(&done), "21");
    restarted.cancel().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

/// Two instances of a paid server, as behind a load balancer, on one Redis: a payment
/// opened through one is confirmed through the other, its result is the same through
/// both, and its funds are captured once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_servers_sharing_a_redis_store_confirm_each_others_payments() {
    let service = TestServer::start().await;
    let args = ["--mode", "two-step", "--store", "redis://127.0.0.1:6379"];
    let first = Recorder::default()
        .serve(example_child_with(&service, &args))
        .await
        .unwrap();
    let second = Recorder::default()
        .serve(example_child_with(&service, &args))
        .await
        .unwrap();
    let answer = call(&first, "add", json!({"a": 20, "b": 1})).await;
    let confirm = json!({"payment_id": payment_id_of(&answer)});
    // Unpaid, the other instance knows the payment and says so.
    let unpaid = call(&second, "confirm_add_payment", confirm.clone()).await;
    assert_eq!(structured(&unpaid)["status"], "pending", "{unpaid:?}");
    pay_with(&service, &session_of(&answer)).await;
    let done = call(&second, "confirm_add_payment", confirm.clone()).await;
    assert_eq!(text(&done), "21");
    let again = call(&first, "confirm_add_payment", confirm).await;
    assert_eq!(text(&again), "21");
    let session = session_at(&service, &session_of(&answer)).await;
    assert_eq!(session["captureStatus"], "captured", "{session}");
    first.cancel().await.unwrap();
    second.cancel().await.unwrap();
}

/// A shared store is not trusted to say which session pays for which call: the service
/// keeps each session's tool and argument hash, and a confirmation checks them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_paid_for_another_call_does_not_pay_this_one() {
    let service = TestServer::start().await;
    let dir = tempfile_dir();
    let path = dir.join("payments.db");
    let store = format!("sqlite:{}", path.display());
    let args = ["--mode", "two-step", "--store", store.as_str()];
    let client = Recorder::default()
        .serve(example_child_with(&service, &args))
        .await
        .unwrap();
    let small = call(&client, "add", json!({"a": 1, "b": 2})).await;
    let large = call(&client, "add", json!({"a": 100, "b": 200})).await;
    pay_with(&service, &session_of(&large)).await;
    // The store now says the large call's paid session pays for the small call.
    let db = sqlx::SqlitePool::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap();
    sqlx::query(
        "UPDATE walleot_mcp_payments SET payment = json_set(payment, '$.session_id', ?) \
         WHERE payment_id = ?",
    )
    .bind(session_of(&large))
    .bind(payment_id_of(&small))
    .execute(&db)
    .await
    .unwrap();
    let refused = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": payment_id_of(&small)}),
    )
    .await;
    assert!(
        text(&refused).contains("another tool call"),
        "{}",
        text(&refused)
    );
    let session = session_at(&service, &session_of(&large)).await;
    assert_eq!(session["captureStatus"], "held", "nothing was captured");
    let done = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": payment_id_of(&large)}),
    )
    .await;
    assert_eq!(text(&done), "300");
    client.cancel().await.unwrap();
    std::fs::remove_dir_all(dir).unwrap();
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("walleot-mcp-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_sees_a_payment_within_a_moment_of_it() {
    let service = TestServer::start().await;
    // Progress every 10 s: the payment must still be seen at once.
    let walleot = paywall(&service, Mode::Progress, None).poll_every(Duration::from_secs(10));
    let setup = Setup::serve(service, walleot).await;
    let recorder = Recorder::default();
    let client = client_as(&setup, recorder.clone()).await;
    let (base, key) = (
        setup.service.base_url.clone(),
        setup.service.test_key.clone(),
    );
    let paying = pay_when_shown(recorder.progress.clone(), move |message| async move {
        pay_linked(base, key, message).await;
        Instant::now()
    });
    let answer = call(&client, "add", json!({"a": 1, "b": 1})).await;
    let answered = Instant::now();
    let paid = paying.await.unwrap();
    assert_eq!(text(&answer), "2");
    assert!(
        answered.duration_since(paid) < Duration::from_millis(1500),
        "the payment was seen {:?} after it was made",
        answered.duration_since(paid)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_accepted_form_that_says_unpaid_is_answered_at_once() {
    let service = TestServer::start().await;
    let walleot =
        paywall(&service, Mode::Elicitation, None).wait_for_payment(Duration::from_secs(300));
    let setup = Setup::serve(service, walleot).await;
    let recorder = Recorder {
        unpaid: true,
        ..Recorder::eliciting(&setup, true, false)
    };
    let client = client_as(&setup, recorder).await;
    let started = Instant::now();
    let answer = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status_of(&answer), "pending");
    assert_eq!(setup.runs.load(Ordering::SeqCst), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_elicitation_the_client_dismissed_is_not_a_decline_by_the_payer() {
    let setup = Setup::start(Mode::Elicitation).await;
    let recorder = Recorder {
        dismiss: true,
        ..Recorder::eliciting(&setup, false, true)
    };
    let client = client_as(&setup, recorder).await;
    let answer = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(status_of(&answer), "payment_required", "{}", text(&answer));
    assert!(!text(&answer).contains("declined"));
    // The link stays payable, and pays for the call.
    assert_eq!(
        setup.session(&session_of(&answer)).await["status"],
        "pending"
    );
    setup.pay(&session_of(&answer)).await;
    let done = call(
        &client,
        "confirm_add_payment",
        json!({"payment_id": payment_id_of(&answer)}),
    )
    .await;
    assert_eq!(text(&done), "2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_payment_request_reads_the_same_in_every_mode() {
    // (PROGRESS answers the same once its wait ends; its calls carry progress tokens.)
    for mode in [
        Mode::TwoStep,
        Mode::Resubmit,
        Mode::DynamicTools,
        Mode::Elicitation,
    ] {
        // A client without elicitation: every mode answers with the link.
        let setup = Setup::start(mode).await;
        let client = setup.client().await;
        let answer = call(&client, "add", json!({"a": 1, "b": 1})).await;
        let required = structured(&answer);
        assert_eq!(answer.is_error, Some(true), "{mode}");
        assert_eq!(required["status"], "payment_required", "{mode}");
        assert_eq!(required["amount"], json!(0.19), "{mode}");
        assert_eq!(required["amountMinor"], 19, "{mode}");
        assert!(required["expiresAt"].is_string(), "{mode}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_url_elicitation_on_mcp_2026_07_28_names_its_elicitation() {
    let setup = Setup::start(Mode::Elicitation).await;
    let client = Recorder::eliciting(&setup, false, true)
        .on_2026(&setup.mcp_url)
        .await;
    let first = client
        .call_tool_once(
            CallToolRequestParams::new("add").with_arguments(args(json!({"a": 1, "b": 1}))),
        )
        .await
        .unwrap();
    let CallToolResponse::InputRequired(required) = first else {
        panic!("expected an input-required result");
    };
    let shown = serde_json::to_value(&required).unwrap();
    let request = &shown["inputRequests"]["payment"];
    let id = request["params"]["elicitationId"]
        .as_str()
        .unwrap_or_default();
    assert!(!id.is_empty(), "{shown}");
    assert_eq!(request["params"]["mode"], "url", "{shown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_errors_do_not_show_the_services_address() {
    let setup = Setup::start_with(Mode::TwoStep, Some("http://127.0.0.1:9".into())).await;
    let client = setup.client().await;
    let failed = call(&client, "add", json!({"a": 1, "b": 1})).await;
    assert_eq!(failed.is_error, Some(true));
    let said = text(&failed);
    assert!(said.contains("could not be reached"), "{said}");
    assert!(!said.contains("127.0.0.1:9"), "{said}");
}

#[test]
fn the_example_lists_every_mode_in_its_help() {
    let help = std::process::Command::new(example_binary())
        .arg("--help")
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    for mode in [
        "two-step",
        "resubmit",
        "elicitation",
        "progress",
        "dynamic-tools",
        "auto",
    ] {
        assert!(help.contains(mode), "{mode} missing from:\n{help}");
    }
    assert!(help.contains("sqlite:PATH"), "{help}");
}

/// A tool priced "up to" holds its price, and only what its result says it used is
/// captured; the rest goes back to the payer at once. Nothing used costs nothing, and
/// more than the price costs the price.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_up_to_price_captures_what_the_call_used() {
    let setup = Setup::start(Mode::TwoStep).await;
    let client = setup.client().await;
    let listed = client.list_all_tools().await.unwrap();
    let metered = listed.iter().find(|t| t.name == "metered").unwrap();
    let price = serde_json::to_value(&metered.meta).unwrap()["price"].clone();
    assert_eq!(
        price,
        json!({"amount": 0.5, "currency": "USD", "upTo": true})
    );

    let mut balance = 0;
    for (units, charged) in [(12, 12), (0, 0), (80, 50)] {
        let answer = call(&client, "metered", json!({"units": units})).await;
        assert!(
            text(&answer).contains("up to 0.50 USD"),
            "{}",
            text(&answer)
        );
        let (payment_id, session) = (payment_id_of(&answer), session_of(&answer));
        setup.pay(&session).await;
        assert_eq!(
            setup.session(&session).await["amount"],
            50,
            "the price is held"
        );
        let done = call(
            &client,
            "confirm_metered_payment",
            json!({"payment_id": payment_id}),
        )
        .await;
        assert_eq!(text(&done), format!("used {units}"));
        // A paid result carries the service's signed receipt of what was captured.
        let receipt = done
            .meta
            .as_ref()
            .and_then(|meta| meta.0.get(walleot_mcp::RECEIPT_META))
            .and_then(|r| r.as_str());
        match receipt {
            Some(receipt) => {
                let service =
                    walleot_client::Client::new(&setup.service.base_url, &setup.service.test_key)
                        .unwrap();
                let claims =
                    walleot_client::verify_receipt(receipt, &service.jwks().await.unwrap())
                        .unwrap();
                assert_eq!(
                    (claims.session_id.as_str(), claims.amount_captured),
                    (session.as_str(), charged)
                );
            }
            None => assert_eq!(charged, 0, "a charged result has a receipt"),
        }
        let read = setup.session(&session).await;
        if charged == 0 {
            assert_eq!(
                (&read["status"], &read["captureStatus"]),
                (&json!("cancelled"), &json!("released")),
                "{read}"
            );
        } else {
            assert_eq!(
                (&read["captureStatus"], &read["amountCaptured"]),
                (&json!("captured"), &json!(charged)),
                "{read}"
            );
        }
        balance += charged;
        assert_eq!(setup.merchant_balance().await, balance);
    }
    let problems = setup.service.wallets().verify_ledger().await.unwrap();
    assert!(problems.is_empty(), "{problems:?}");
}
