use crate::helpers::{assert_error, spawn_app};
use serde_json::{json, Value};
use walleot_server::domain::Livemode;

#[tokio::test]
async fn pages_walk_every_session_newest_first() {
    let app = spawn_app().await;
    let mut created = Vec::new();
    for _ in 0..23 {
        created.push(app.create_session().await);
    }
    created.reverse();
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/sessions?limit=10&cursor={c}"),
            None => "/v1/sessions?limit=10".to_string(),
        };
        let page: Value = app.get(&path, app.key()).await.json().await.unwrap();
        pages += 1;
        for s in page["data"].as_array().unwrap() {
            seen.push(s["sessionId"].as_str().unwrap().to_string());
        }
        if page["hasMore"] == true {
            cursor = Some(page["nextCursor"].as_str().unwrap().to_string());
        } else {
            assert!(page["nextCursor"].is_null());
            break;
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, created);
}

#[tokio::test]
async fn the_status_filter_counts_expiry() {
    let app = spawn_app().await;
    let paid = app.create_session().await;
    app.post(&format!("/v1/test_helpers/sessions/{paid}/pay"), app.key())
        .await;
    let soon = app
        .create_session_with(
            app.key(),
            json!({"amount": 5, "currency": "usd", "expiresIn": 60}),
        )
        .await["sessionId"]
        .as_str()
        .unwrap()
        .to_string();
    let pending = app.create_session().await;
    app.server.clock.advance_ms(61_000);
    let ids = |page: Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["sessionId"].as_str().unwrap().to_string())
            .collect()
    };
    let of = |status: &'static str| {
        let app = &app;
        async move {
            app.get(&format!("/v1/sessions?status={status}"), app.key())
                .await
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    assert_eq!(ids(of("paid").await), vec![paid.clone()]);
    assert_eq!(ids(of("pending").await), vec![pending.clone()]);
    let expired = of("expired").await;
    assert_eq!(ids(expired.clone()), vec![soon.clone()]);
    assert_eq!(expired["data"][0]["status"], "expired");
    assert!(ids(of("cancelled").await).is_empty());
}

#[tokio::test]
async fn bad_list_parameters_are_refused() {
    let app = spawn_app().await;
    let other = app.server.other_merchant_key("Other", Livemode::Test).await;
    let foreign = app
        .create_session_with(&other, json!({"amount": 1, "currency": "usd"}))
        .await;
    let foreign = foreign["sessionId"].as_str().unwrap();
    let cases = [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("limit=-1", "limit"),
        ("status=PAID", "status"),
        ("status=refunded", "status"),
        ("cursor=abc", "cursor"),
        ("cursor=sess_0", "cursor"),
        ("colour=blue", "colour"),
    ];
    for (query, needle) in cases {
        let response = app.get(&format!("/v1/sessions?{query}"), app.key()).await;
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(message.contains(needle), "{query}: {message}");
    }
    // A well-formed cursor that names no session of this account is missing, as the
    // session itself would be.
    for cursor in ["sess_000000000000000000000000", foreign] {
        let response = app
            .get(&format!("/v1/sessions?cursor={cursor}"), app.key())
            .await;
        let message = assert_error(response, 404, "not_found").await;
        assert!(message.contains("cursor"), "{cursor}: {message}");
    }
}

#[tokio::test]
async fn an_empty_cursor_reads_the_first_page() {
    let app = spawn_app().await;
    let id = app.create_session().await;
    let response = app.get("/v1/sessions?cursor=", app.key()).await;
    assert_eq!(response.status(), 200);
    let page: serde_json::Value = response.json().await.unwrap();
    assert_eq!(page["data"][0]["sessionId"], id.as_str());
}
