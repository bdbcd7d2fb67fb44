//! Clients that send slowly, stall or never finish, spoken to over raw TCP: they get an
//! answer or a closed connection within the configured deadlines, and never keep real
//! requests waiting.

use crate::helpers::{spawn_app_with, App};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn connect(app: &App) -> TcpStream {
    let addr = app.server.base_url.trim_start_matches("http://");
    TcpStream::connect(addr).await.expect("the service accepts")
}

/// Everything the service sends until it closes the connection (or `limit` passes),
/// and how long that took.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> (String, Duration) {
    let started = Instant::now();
    let mut received = Vec::new();
    let _ = tokio::time::timeout(limit, stream.read_to_end(&mut received)).await;
    (
        String::from_utf8_lossy(&received).into_owned(),
        started.elapsed(),
    )
}

/// Reads one answer whose body is JSON: its status line and body.
async fn read_answer(stream: &mut TcpStream, limit: Duration) -> (String, serde_json::Value) {
    let mut received = Vec::new();
    let mut chunk = [0u8; 4096];
    let read = async {
        loop {
            let n = stream.read(&mut chunk).await.unwrap_or(0);
            if n == 0 {
                return;
            }
            received.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&received);
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let length = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= length {
                    return;
                }
            }
        }
    };
    tokio::time::timeout(limit, read)
        .await
        .expect("an answer in time");
    let text = String::from_utf8_lossy(&received).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete answer");
    let status = head.lines().next().unwrap_or_default().to_string();
    (status, serde_json::from_str(body).expect("a JSON body"))
}

#[tokio::test]
async fn headers_that_never_finish_close_the_connection_within_the_timeout() {
    let app = spawn_app_with(|c| c.connections.header_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    stream
        .write_all(b"GET /v1/sessions HTTP/1.1\r\nHost: walleot\r\nX-Slow: ")
        .await
        .unwrap();
    let (_, took) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(3),
        "closed after {took:?}"
    );
}

#[tokio::test]
async fn a_declared_body_over_the_limit_is_refused_with_413_at_once() {
    let app = spawn_app_with(|_| {}).await;
    for (path, key) in [
        ("/v1/sessions", Some(app.key().to_string())),
        ("/v1/sessions", None),
        (
            "/v1/test_helpers/sessions/sess_000000000000000000000000/pay",
            Some(app.key().to_string()),
        ),
    ] {
        let mut stream = connect(&app).await;
        let auth = key
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let head = format!(
            "POST {path} HTTP/1.1\r\nHost: walleot\r\n{auth}Content-Type: application/json\r\n\
             Idempotency-Key: big-1\r\nContent-Length: 10000000000\r\n\r\n"
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (status, body) = read_answer(&mut stream, Duration::from_secs(2)).await;
        assert!(started.elapsed() < Duration::from_secs(1));
        if auth.is_empty() {
            // Without a key the gate answers first, also at once.
            assert!(status.starts_with("HTTP/1.1 401"), "{path}: {status}");
        } else {
            assert!(status.starts_with("HTTP/1.1 413"), "{path}: {status}");
            assert_eq!(body["error"]["type"], "invalid_request", "{body}");
        }
    }
}

#[tokio::test]
async fn a_stalled_body_is_answered_408_within_the_body_timeout() {
    let app = spawn_app_with(|c| c.connections.body_timeout = Duration::from_secs(1)).await;
    for idempotency in ["", "Idempotency-Key: stalled-1\r\n"] {
        let mut stream = connect(&app).await;
        let head = format!(
            "POST /v1/sessions HTTP/1.1\r\nHost: walleot\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\n{idempotency}Content-Length: 100\r\n\r\n{{\"amount\":",
            app.key()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        let started = Instant::now();
        let (status, body) = read_answer(&mut stream, Duration::from_secs(5)).await;
        let took = started.elapsed();
        assert!(
            status.starts_with("HTTP/1.1 408"),
            "{idempotency:?}: {status}"
        );
        assert_eq!(body["error"]["type"], "invalid_request");
        assert!(
            took >= Duration::from_millis(800) && took < Duration::from_secs(3),
            "{took:?}"
        );
    }
    // A retry of the stalled request under the same key runs afresh.
    let retried = app
        .http
        .post(app.url("/v1/sessions"))
        .bearer_auth(app.key())
        .header("Idempotency-Key", "stalled-1")
        .json(&serde_json::json!({"amount": 200, "currency": "usd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), 200);
}

#[tokio::test]
async fn hundreds_of_stalled_sockets_do_not_keep_a_real_request_waiting() {
    let app = spawn_app_with(|_| {}).await;
    let mut stalled = Vec::new();
    for _ in 0..300 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"POST /v1/sessions HTTP/1.1\r\nHost: walleot\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    let started = Instant::now();
    let response = app.get("/v1/sessions", app.key()).await;
    assert_eq!(response.status(), 200);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    drop(stalled);
}

#[tokio::test]
async fn at_the_connection_limit_a_new_client_is_served_once_a_stalled_one_times_out() {
    let app = spawn_app_with(|c| {
        c.connections.max_connections = 20;
        c.connections.header_timeout = Duration::from_secs(1);
    })
    .await;
    let mut stalled = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(&app).await;
        stream
            .write_all(b"GET /v1/sessions HTTP/1.1\r\n")
            .await
            .unwrap();
        stalled.push(stream);
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    let response = app.get("/v1/sessions", app.key()).await;
    let took = started.elapsed();
    assert_eq!(response.status(), 200);
    // It waited for a slot: the stalled clients held all of them until their deadline.
    assert!(
        took >= Duration::from_millis(500) && took < Duration::from_secs(4),
        "{took:?}"
    );
    drop(stalled);
}

#[tokio::test]
async fn odd_but_parseable_requests_get_errors_in_the_api_shape() {
    let app = spawn_app_with(|_| {}).await;
    let key = app.key().to_string();
    let auth = format!("Authorization: Bearer {key}\r\n");
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad escape in path", format!("GET /v1/sessions/%FF%FE HTTP/1.1\r\nHost: w\r\n{auth}\r\n").into_bytes(), "404"),
        ("bad escape in query", format!("GET /v1/sessions?limit=%FF HTTP/1.1\r\nHost: w\r\n{auth}\r\n").into_bytes(), "400"),
        ("repeated parameter", format!("GET /v1/sessions?limit=1&limit=2 HTTP/1.1\r\nHost: w\r\n{auth}\r\n").into_bytes(), "400"),
        ("lower-case scheme", format!("GET /v1/sessions?limit=x HTTP/1.1\r\nHost: w\r\nAuthorization: bearer {key}\r\n\r\n").into_bytes(), "400"),
        ("non-ASCII key bytes", [b"GET /v1/sessions HTTP/1.1\r\nHost: w\r\nAuthorization: Bearer \xff\xfe\r\n\r\n".as_slice()].concat(), "401"),
        ("asterisk target", b"OPTIONS * HTTP/1.1\r\nHost: w\r\n\r\n".to_vec(), "404"),
        ("absolute target", format!("GET http://w/v1/nope HTTP/1.1\r\nHost: w\r\n{auth}\r\n").into_bytes(), "404"),
        ("unknown method", format!("BREW /v1/sessions HTTP/1.1\r\nHost: w\r\n{auth}\r\n").into_bytes(), "405"),
        ("body not UTF-8", [format!("POST /v1/sessions HTTP/1.1\r\nHost: w\r\n{auth}Content-Type: application/json\r\nContent-Length: 4\r\n\r\n").as_bytes(), b"{\xff\xfe}"].concat(), "400"),
        ("broken chunks", format!("POST /v1/sessions HTTP/1.1\r\nHost: w\r\n{auth}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n").into_bytes(), "400"),
    ];
    for (name, request, status) in cases {
        let mut stream = connect(&app).await;
        stream.write_all(&request).await.unwrap();
        let (line, body) = read_answer(&mut stream, Duration::from_secs(3)).await;
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status}")),
            "{name}: {line}"
        );
        assert!(body["error"]["type"].is_string(), "{name}: {body}");
        assert!(body["error"]["message"].is_string(), "{name}: {body}");
    }
}

#[tokio::test]
async fn an_idle_kept_alive_connection_is_closed_after_the_header_timeout() {
    let app = spawn_app_with(|c| c.connections.header_timeout = Duration::from_secs(1)).await;
    let mut stream = connect(&app).await;
    let request = format!(
        "GET /v1/sessions HTTP/1.1\r\nHost: walleot\r\nAuthorization: Bearer {}\r\n\r\n",
        app.key()
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let (status, _) = read_answer(&mut stream, Duration::from_secs(2)).await;
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    let (_, idle) = read_until_closed(&mut stream, Duration::from_secs(10)).await;
    assert!(idle < Duration::from_secs(3), "closed after {idle:?} idle");
}
