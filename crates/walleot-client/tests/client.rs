//! The client against the real service on a random port.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use walleot_client::{Client, CreateSessionRequest, Error, ErrorType, ListSessions, SessionStatus};
use walleot_server::testing::TestServer;

fn request(amount: i64) -> CreateSessionRequest {
    CreateSessionRequest {
        amount,
        currency: "USD".into(),
        description: Some("client test".into()),
        expires_in: None,
        capture_method: None,
        metadata: None,
        customer: None,
    }
}

#[tokio::test]
async fn a_session_goes_from_creation_to_payment() {
    let server = TestServer::start().await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    let session = client.create_session(&request(250)).await.unwrap();
    assert_eq!(session.status, SessionStatus::Pending);
    assert_eq!(session.amount, 250);
    assert_eq!(session.currency.code(), "usd");
    assert_eq!(
        session.url,
        format!("{}/checkout/{}", server.public_url, session.session_id)
    );
    let paid = client
        .test_helpers()
        .pay(&session.session_id)
        .await
        .unwrap();
    assert_eq!(paid.status, SessionStatus::Paid);
    assert_eq!(
        client
            .get_session(&session.session_id)
            .await
            .unwrap()
            .status,
        SessionStatus::Paid
    );
}

#[tokio::test]
async fn cancel_fail_expire_and_list() {
    let server = TestServer::start().await;
    let client = Client::new(&format!("{}/v1/", server.base_url), &server.test_key).unwrap();
    let a = client.create_session(&request(1)).await.unwrap();
    let b = client.create_session(&request(2)).await.unwrap();
    let c = client.create_session(&request(3)).await.unwrap();
    assert_eq!(
        client.cancel_session(&a.session_id).await.unwrap().status,
        SessionStatus::Cancelled
    );
    assert_eq!(
        client
            .test_helpers()
            .fail(&b.session_id)
            .await
            .unwrap()
            .status,
        SessionStatus::Failed
    );
    assert_eq!(
        client
            .test_helpers()
            .expire(&c.session_id)
            .await
            .unwrap()
            .status,
        SessionStatus::Expired
    );

    let first = client
        .list_sessions(&ListSessions {
            limit: Some(2),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(first.data.len(), 2);
    assert!(first.has_more);
    let rest = client
        .list_sessions(&ListSessions {
            limit: Some(2),
            cursor: first.next_cursor.clone(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(rest.data.len(), 1);
    assert_eq!(rest.data[0].session_id, a.session_id);
    let failed = client
        .list_sessions(&ListSessions {
            status: Some(SessionStatus::Failed),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(failed.data.len(), 1);
    assert_eq!(failed.data[0].session_id, b.session_id);
}

#[tokio::test]
async fn api_errors_are_typed() {
    let server = TestServer::start().await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    let missing = client
        .get_session("sess_000000000000000000000000")
        .await
        .unwrap_err();
    assert_eq!(missing.kind(), Some(ErrorType::NotFound));
    assert_eq!(missing.status(), Some(404));
    let invalid = client.create_session(&request(0)).await.unwrap_err();
    assert_eq!(invalid.kind(), Some(ErrorType::InvalidRequest));
    assert!(invalid.to_string().contains("amount"), "{invalid}");
    let live = Client::new(&server.base_url, &server.live_key).unwrap();
    let session = live.create_session(&request(5)).await.unwrap();
    let forbidden = live
        .test_helpers()
        .pay(&session.session_id)
        .await
        .unwrap_err();
    assert_eq!(forbidden.kind(), Some(ErrorType::Forbidden));
    let stranger = Client::new(&server.base_url, "sk_test_nope").unwrap();
    assert_eq!(
        stranger
            .get_session(&session.session_id)
            .await
            .unwrap_err()
            .kind(),
        Some(ErrorType::Unauthorized)
    );
}

#[tokio::test]
async fn a_rate_limited_call_reports_when_to_retry() {
    let server = TestServer::start_with(|c| c.limits.sessions_per_window = 1).await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    client.create_session(&request(1)).await.unwrap();
    match client.create_session(&request(1)).await.unwrap_err() {
        Error::Api {
            kind: ErrorType::RateLimited,
            retry_after: Some(secs),
            ..
        } => assert!((1..=60).contains(&secs)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn the_same_idempotency_key_gives_the_same_session() {
    let server = TestServer::start().await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    let a = client
        .create_session_idempotent(&request(9), "order-77")
        .await
        .unwrap();
    let b = client
        .create_session_idempotent(&request(9), "order-77")
        .await
        .unwrap();
    assert_eq!(a.session_id, b.session_id);
    let reused = client
        .create_session_idempotent(&request(10), "order-77")
        .await
        .unwrap_err();
    assert_eq!(reused.kind(), Some(ErrorType::IdempotencyKeyReused));
}

/// A proxy that forwards the first connection's request to the service but drops the
/// connection before the answer reaches the client, as a failing network would; later
/// connections pass through.
async fn lossy_proxy(target: String) -> (String, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let connections = Arc::new(AtomicUsize::new(0));
    let seen = connections.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut inbound, _)) = listener.accept().await else {
                return;
            };
            let n = seen.fetch_add(1, Ordering::SeqCst);
            let target = target.clone();
            tokio::spawn(async move {
                let mut outbound = TcpStream::connect(&target).await.unwrap();
                if n == 0 {
                    let mut buf = vec![0u8; 64 * 1024];
                    let read = inbound.read(&mut buf).await.unwrap();
                    outbound.write_all(&buf[..read]).await.unwrap();
                    // Wait for the service's answer, then lose it.
                    let _ = outbound.read(&mut buf).await;
                    drop(inbound);
                } else {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });
    (format!("http://{addr}"), connections)
}

#[tokio::test]
async fn a_lost_answer_is_retried_without_creating_a_second_session() {
    let server = TestServer::start().await;
    let target = server.base_url.trim_start_matches("http://").to_string();
    let (proxy, connections) = lossy_proxy(target).await;
    let client = Client::builder(&proxy, &server.test_key)
        .initial_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let session = client.create_session(&request(123)).await.unwrap();
    assert!(
        connections.load(Ordering::SeqCst) >= 2,
        "the first answer was lost and retried"
    );
    let direct = Client::new(&server.base_url, &server.test_key).unwrap();
    let all = direct
        .list_sessions(&ListSessions::default())
        .await
        .unwrap();
    assert_eq!(all.data.len(), 1, "one session despite the retry");
    assert_eq!(all.data[0].session_id, session.session_id);
}

#[tokio::test]
async fn a_silent_service_times_out_and_a_missing_one_fails_fast() {
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let client = Client::builder(&format!("http://{silent_addr}"), "sk_test_x")
        .timeout(Duration::from_millis(300))
        .max_retries(1)
        .initial_backoff(Duration::from_millis(10))
        .build()
        .unwrap();
    let started = Instant::now();
    let err = client.get_session("sess_x").await.unwrap_err();
    assert!(matches!(err, Error::Transport(_)), "{err:?}");
    assert!(started.elapsed() < Duration::from_secs(5));

    // A port nobody listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let client = Client::builder(&format!("http://{closed}"), "sk_test_x")
        .max_retries(0)
        .build()
        .unwrap();
    assert!(matches!(
        client.get_session("sess_x").await.unwrap_err(),
        Error::Transport(_)
    ));
}

#[tokio::test]
async fn manual_capture_holds_then_captures_or_releases() {
    let server = TestServer::start().await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    let manual = CreateSessionRequest {
        capture_method: Some(walleot_client::CaptureMethod::Manual),
        ..request(40)
    };
    let a = client.create_session(&manual).await.unwrap();
    let b = client.create_session(&manual).await.unwrap();
    for id in [&a.session_id, &b.session_id] {
        let held = client.test_helpers().pay(id).await.unwrap();
        assert_eq!(
            (held.status, held.capture_status),
            (
                SessionStatus::Paid,
                Some(walleot_client::CaptureStatus::Held)
            )
        );
    }
    let captured = client.capture_session(&a.session_id).await.unwrap();
    assert_eq!(
        captured.capture_status,
        Some(walleot_client::CaptureStatus::Captured)
    );
    let released = client.release_session(&b.session_id).await.unwrap();
    assert_eq!(
        (released.status, released.capture_status),
        (
            SessionStatus::Cancelled,
            Some(walleot_client::CaptureStatus::Released)
        )
    );
    assert_eq!(
        client
            .release_session(&a.session_id)
            .await
            .unwrap_err()
            .kind(),
        Some(ErrorType::Conflict)
    );
}

#[tokio::test]
async fn a_metered_capture_then_refunds_that_a_retry_never_repeats() {
    let server = TestServer::start().await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    let manual = CreateSessionRequest {
        capture_method: Some(walleot_client::CaptureMethod::Manual),
        ..request(100)
    };
    let session = client.create_session(&manual).await.unwrap();
    client
        .test_helpers()
        .pay(&session.session_id)
        .await
        .unwrap();
    let captured = client
        .capture_session_amount(&session.session_id, 70, Some("capture-70"))
        .await
        .unwrap();
    assert_eq!(
        (captured.amount_captured, captured.amount_refunded),
        (Some(70), 0)
    );
    let partial = walleot_client::CreateRefundRequest {
        amount: Some(20),
        reason: Some(walleot_client::RefundReason::ToolFailed),
    };
    let first = client
        .refund_session(&session.session_id, &partial, Some("refund-20"))
        .await
        .unwrap();
    let retried = client
        .refund_session(&session.session_id, &partial, Some("refund-20"))
        .await
        .unwrap();
    assert_eq!(retried, first);
    let rest = client
        .refund_session(&session.session_id, &Default::default(), None)
        .await
        .unwrap();
    assert_eq!(rest.amount, 50);
    let refunds = client.list_refunds(&session.session_id).await.unwrap();
    assert_eq!(refunds.data, [first, rest]);
    let none_left = client
        .refund_session(&session.session_id, &Default::default(), None)
        .await
        .unwrap_err();
    assert_eq!(none_left.kind(), Some(ErrorType::Conflict));
    let read = client.get_session(&session.session_id).await.unwrap();
    assert_eq!((read.amount_captured, read.amount_refunded), (Some(70), 70));
    let events = client
        .list_events(&walleot_client::ListEvents {
            limit: Some(3),
            cursor: None,
        })
        .await
        .unwrap();
    let kinds: Vec<_> = events.data.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(
        kinds,
        ["session.refunded", "session.refunded", "session.captured"]
    );
    assert!(events.has_more);
}

#[tokio::test]
async fn wait_session_answers_soon_after_a_payment() {
    let server = TestServer::start().await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    let session = client.create_session(&request(40)).await.unwrap();
    let waiter = client.clone();
    let id = session.session_id.clone();
    let waiting =
        tokio::spawn(async move { waiter.wait_session(&id, Duration::from_secs(30)).await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let paid_at = Instant::now();
    client
        .test_helpers()
        .pay(&session.session_id)
        .await
        .unwrap();
    let seen = waiting.await.unwrap().unwrap();
    assert_eq!(seen.status, SessionStatus::Paid);
    assert!(
        paid_at.elapsed() < Duration::from_secs(1),
        "{:?}",
        paid_at.elapsed()
    );
}

#[tokio::test]
async fn wait_session_outlasts_the_ordinary_timeout_and_answers_pending() {
    let server = TestServer::start().await;
    // The ordinary timeout is shorter than the wait: the wait must add to it.
    let client = Client::builder(&server.base_url, &server.test_key)
        .timeout(Duration::from_millis(800))
        .build()
        .unwrap();
    let session = client.create_session(&request(41)).await.unwrap();
    let started = Instant::now();
    let seen = client
        .wait_session(&session.session_id, Duration::from_secs(2))
        .await
        .unwrap();
    let took = started.elapsed();
    assert_eq!(seen.status, SessionStatus::Pending);
    assert!(
        took >= Duration::from_millis(1900) && took < Duration::from_secs(4),
        "{took:?}"
    );
}

#[tokio::test]
async fn a_rate_limited_call_says_so_and_is_not_retried() {
    let server = TestServer::start_with(|c| c.limits.sessions_per_window = 1).await;
    // Were a 429 retried, the backoff alone would take seconds.
    let client = Client::builder(&server.base_url, &server.test_key)
        .max_retries(3)
        .initial_backoff(Duration::from_secs(2))
        .build()
        .unwrap();
    client.create_session(&request(1)).await.unwrap();
    let started = Instant::now();
    let refused = client.create_session(&request(1)).await.unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(1), "retried a 429");
    assert_eq!(refused.status(), Some(429));
    assert_eq!(refused.kind(), Some(ErrorType::RateLimited));
    let wait = refused.retry_after().expect("Retry-After on a 429");
    assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60));
    assert_eq!(
        refused.to_string(),
        format!(
            "rate limited by the payment service, retry in {} s",
            wait.as_secs()
        )
    );
    // Other errors keep their status, type and message.
    let missing = client.get_session("sess_nope").await.unwrap_err();
    assert_eq!(missing.retry_after(), None);
    assert!(
        missing.to_string().starts_with("404 not_found: "),
        "{missing}"
    );
}

#[tokio::test]
async fn webhook_endpoints_are_added_listed_enabled_and_removed() {
    use walleot_client::{CreateWebhookEndpointRequest, EventType, WebhookEndpointStatus};
    let server = TestServer::start().await;
    let client = Client::new(&server.base_url, &server.test_key).unwrap();
    let added = client
        .create_webhook_endpoint(&CreateWebhookEndpointRequest {
            url: "http://127.0.0.1:9/hook".into(),
            events: Some(vec![EventType::SessionPaid, EventType::SessionCreated]),
        })
        .await
        .unwrap();
    assert!(added.secret.as_deref().unwrap().starts_with("whsec_"));
    assert_eq!(added.status, WebhookEndpointStatus::Enabled);
    let listed = client.list_webhook_endpoints().await.unwrap().data;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].endpoint_id, added.endpoint_id);
    assert_eq!(listed[0].secret, None);

    let session = client.create_session(&request(100)).await.unwrap();
    let events = client
        .list_events(&walleot_client::ListEvents::default())
        .await
        .unwrap();
    let created = &events.data[0];
    assert_eq!(
        created.data.session_id.as_deref(),
        Some(session.session_id.as_str())
    );
    let again = client.redeliver_event(&created.event_id).await.unwrap();
    assert_eq!(again.endpoint_ids, std::slice::from_ref(&added.endpoint_id));

    let enabled = client
        .enable_webhook_endpoint(&added.endpoint_id)
        .await
        .unwrap();
    assert_eq!(enabled.status, WebhookEndpointStatus::Enabled);
    let removed = client
        .delete_webhook_endpoint(&added.endpoint_id)
        .await
        .unwrap();
    assert_eq!(removed.status, WebhookEndpointStatus::Deleted);
    let gone = client
        .delete_webhook_endpoint(&added.endpoint_id)
        .await
        .unwrap_err();
    assert_eq!(gone.kind(), Some(ErrorType::NotFound));
    let bad = client
        .create_webhook_endpoint(&CreateWebhookEndpointRequest {
            url: "ftp://example.com".into(),
            events: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad.kind(), Some(ErrorType::InvalidRequest));
}
