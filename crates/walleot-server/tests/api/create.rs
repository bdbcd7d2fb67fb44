use crate::helpers::{assert_error, spawn_app};
use reqwest::Method;
use serde_json::{json, Value};

#[tokio::test]
async fn the_reference_request_answers_a_session_id_and_a_checkout_url() {
    let app = spawn_app().await;
    let response = app
        .post_json(
            "/v1/sessions",
            app.key(),
            &json!({"amount": 200, "currency": "usd", "description": "Pro feature unlock"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/json");
    let body: Value = response.json().await.unwrap();
    let id = body["sessionId"].as_str().unwrap();
    assert!(id.starts_with("sess_"), "{id}");
    assert_eq!(
        body["url"],
        format!("{}/checkout/{id}", app.server.public_url)
    );
    assert_eq!(body["status"], "pending");
    assert_eq!(body["amount"], 200);
    assert_eq!(body["description"], "Pro feature unlock");
    assert_eq!(body["livemode"], false);

    let read: Value = app
        .get(&format!("/v1/sessions/{id}"), app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["status"], "pending");
    assert_eq!(read["sessionId"], id);
}

#[tokio::test]
async fn currency_is_accepted_in_any_case_and_answered_lower_case() {
    let app = spawn_app().await;
    for (raw, stored) in [("USD", "usd"), ("Eur", "eur"), ("jpy", "jpy")] {
        let body = app
            .create_session_with(app.key(), json!({"amount": 500, "currency": raw}))
            .await;
        assert_eq!(body["currency"], stored);
        let id = body["sessionId"].as_str().unwrap();
        let read: Value = app
            .get(&format!("/v1/sessions/{id}"), app.key())
            .await
            .json()
            .await
            .unwrap();
        assert_eq!(read["currency"], stored);
    }
}

#[tokio::test]
async fn a_session_expires_after_the_requested_time() {
    let app = spawn_app().await;
    let body = app
        .create_session_with(
            app.key(),
            json!({"amount": 1, "currency": "usd", "expiresIn": 600}),
        )
        .await;
    let created = time::OffsetDateTime::parse(
        body["createdAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let expires = time::OffsetDateTime::parse(
        body["expiresAt"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert_eq!((expires - created).whole_seconds(), 600);
}

#[tokio::test]
async fn invalid_bodies_are_refused_with_a_message_naming_the_field() {
    let app = spawn_app().await;
    let long = "x".repeat(1001);
    let cases: Vec<(String, &str)> = vec![
        (r#"{"amount":0,"currency":"usd"}"#.into(), "amount"),
        (r#"{"amount":-5,"currency":"usd"}"#.into(), "amount"),
        (r#"{"amount":2.5,"currency":"usd"}"#.into(), "amount"),
        (r#"{"amount":"200","currency":"usd"}"#.into(), "amount"),
        (r#"{"amount":100000000,"currency":"usd"}"#.into(), "amount"),
        (r#"{"amount":1e30,"currency":"usd"}"#.into(), "amount"),
        (
            r#"{"amount":99999999999999999999999,"currency":"usd"}"#.into(),
            "amount",
        ),
        (r#"{"amount":null,"currency":"usd"}"#.into(), "amount"),
        (r#"{"currency":"usd"}"#.into(), "amount"),
        (r#"{"amount":200}"#.into(), "currency"),
        (r#"{"amount":200,"currency":"usdd"}"#.into(), "currency"),
        (r#"{"amount":200,"currency":"xyz"}"#.into(), "currency"),
        (r#"{"amount":200,"currency":"xau"}"#.into(), "currency"),
        (r#"{"amount":200,"currency":840}"#.into(), "currency"),
        (r#"{"amount":200,"currency":""}"#.into(), "currency"),
        (
            format!(r#"{{"amount":200,"currency":"usd","description":"{long}"}}"#),
            "description",
        ),
        (
            r#"{"amount":200,"currency":"usd","description":7}"#.into(),
            "description",
        ),
        (
            r#"{"amount":200,"currency":"usd","description":"a\u0000b"}"#.into(),
            "description",
        ),
        (
            r#"{"amount":200,"currency":"usd","expiresIn":10}"#.into(),
            "expiresIn",
        ),
        (
            r#"{"amount":200,"currency":"usd","expiresIn":99999999}"#.into(),
            "expiresIn",
        ),
        (
            r#"{"amount":200,"currency":"usd","amont":1}"#.into(),
            "amont",
        ),
        (
            r#"{"amount":200,"currency":"usd","amount":300}"#.into(),
            "amount",
        ),
        (r#"{"amount":200,"currency":"usd""#.into(), "JSON"),
        (r#"{"amount":200,"currency":"usd"} trailing"#.into(), "JSON"),
        ("[200, \"usd\"]".into(), "JSON object"),
        ("null".into(), "JSON object"),
        ("\"text\"".into(), "JSON object"),
        ("".into(), "empty"),
        ("   ".into(), "empty"),
        ("\u{feff}{}".into(), "JSON object"),
    ];
    for (body, needle) in cases {
        let response = app
            .request(Method::POST, "/v1/sessions", Some(app.key()), Some(&body))
            .await;
        assert_eq!(response.status(), 400, "body {body:?}");
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(
            message.contains(needle),
            "body {body:?}: message {message:?} does not mention {needle:?}"
        );
    }
    let list: Value = app
        .get("/v1/sessions", app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        0,
        "no bad input created a session"
    );
}

#[tokio::test]
async fn a_body_that_is_not_json_is_refused_with_415() {
    let app = spawn_app().await;
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let mut req = app
            .http
            .post(app.url("/v1/sessions"))
            .bearer_auth(app.key())
            .body("amount=200&currency=usd");
        if let Some(ct) = content_type {
            req = req.header("content-type", ct);
        }
        let message = assert_error(req.send().await.unwrap(), 415, "invalid_request").await;
        assert!(message.contains("application/json"), "{message}");
    }
    let charset = app
        .http
        .post(app.url("/v1/sessions"))
        .bearer_auth(app.key())
        .header("content-type", "application/json; charset=utf-8")
        .body(r#"{"amount":200,"currency":"usd"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(charset.status(), 200);
}

#[tokio::test]
async fn an_oversized_body_is_refused_with_413() {
    let app = spawn_app().await;
    let body = format!(
        r#"{{"amount":200,"currency":"usd","description":"{}"}}"#,
        "x".repeat(40_000)
    );
    for idempotency in [false, true] {
        let mut req = app
            .http
            .post(app.url("/v1/sessions"))
            .bearer_auth(app.key())
            .header("content-type", "application/json")
            .body(body.clone());
        if idempotency {
            req = req.header("idempotency-key", "big-one");
        }
        assert_error(req.send().await.unwrap(), 413, "invalid_request").await;
    }
}

#[tokio::test]
async fn unknown_routes_and_methods_answer_in_the_error_shape() {
    let app = spawn_app().await;
    let key = Some(app.key());
    assert_error(
        app.request(Method::GET, "/v1/nothing", key, None).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.request(Method::GET, "/v1/sessions/sess_x/refund", key, None)
            .await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.request(Method::GET, "/elsewhere", None, None).await,
        404,
        "not_found",
    )
    .await;
    assert_error(
        app.request(Method::DELETE, "/v1/sessions", key, None).await,
        405,
        "method_not_allowed",
    )
    .await;
    assert_error(
        app.request(Method::PUT, "/v1/sessions/sess_x", key, None)
            .await,
        405,
        "method_not_allowed",
    )
    .await;
    assert_error(
        app.request(Method::GET, "/v1/sessions/sess_x/cancel", key, None)
            .await,
        405,
        "method_not_allowed",
    )
    .await;
}

#[tokio::test]
async fn unknown_and_malformed_session_ids_answer_404() {
    let app = spawn_app().await;
    for id in [
        "sess_000000000000000000000000",
        "sess_x",
        "nothing",
        "%FF%FE",
        "sess_..%2F..%2Fetc",
        &"a".repeat(5000),
    ] {
        let response = app.get(&format!("/v1/sessions/{id}"), app.key()).await;
        assert_error(response, 404, "not_found").await;
    }
}

#[tokio::test]
async fn the_health_check_answers_ok() {
    let app = spawn_app().await;
    let response = app.request(Method::GET, "/healthz", None, None).await;
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "ok");
}

#[tokio::test]
async fn descriptions_with_hidden_or_reordering_characters_are_refused() {
    let app = spawn_app().await;
    for (description, culprit) in [
        ("pay \u{202E}001$ rof", "U+202E"),
        ("left\u{202A}embed", "U+202A"),
        ("isolate \u{2066}x\u{2069}", "U+2066"),
        ("mark\u{200F}", "U+200F"),
        ("mark\u{200E}", "U+200E"),
        ("arabic mark \u{061C}", "U+061C"),
        ("zero\u{200B}width", "U+200B"),
        ("word\u{2060}joiner", "U+2060"),
        ("invisible\u{2062}times", "U+2062"),
        ("\u{FEFF}bom", "U+FEFF"),
        ("soft\u{00AD}hyphen", "U+00AD"),
        ("tag \u{E0041}", "U+E0041"),
        ("line\u{2028}separator", "U+2028"),
        ("tab\there", "U+0009"),
        ("carriage\rreturn", "U+000D"),
        ("escape \u{1B}[31m", "U+001B"),
        ("c1 \u{85} control", "U+0085"),
        ("trailing joiner \u{200D}", "U+200D"),
        ("\u{200C}leading non-joiner", "U+200C"),
    ] {
        let response = app
            .post_json(
                "/v1/sessions",
                app.key(),
                &json!({"amount": 200, "currency": "usd", "description": description}),
            )
            .await;
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(
            message.starts_with("description") && message.contains(culprit),
            "{description:?}: {message}"
        );
    }
}

#[tokio::test]
async fn descriptions_in_any_script_with_newlines_and_emoji_are_accepted() {
    let app = spawn_app().await;
    for description in [
        "Pro feature unlock",
        "two\nlines",
        "Analyse für 0,50 €",
        "تحليل البيانات",
        "می‌خواهم",
        "family 👨\u{200D}👩\u{200D}👧 and ❤\u{FE0F}",
        "日本語の説明",
    ] {
        let session = app
            .create_session_with(
                app.key(),
                json!({"amount": 200, "currency": "usd", "description": description}),
            )
            .await;
        assert_eq!(session["description"], description);
    }
}

#[tokio::test]
async fn an_amount_written_with_a_zero_fraction_counts_as_the_integer_it_is() {
    let app = spawn_app().await;
    let session = app
        .create_session_with(
            app.key(),
            json!({"amount": 7290.0, "currency": "usd", "expiresIn": 600.0}),
        )
        .await;
    assert_eq!(session["amount"], 7290);
    for body in [
        r#"{"amount":7290.5,"currency":"usd"}"#,
        r#"{"amount":1e30,"currency":"usd"}"#,
        r#"{"amount":200,"currency":"usd","expiresIn":600.5}"#,
    ] {
        let response = app
            .request(Method::POST, "/v1/sessions", Some(app.key()), Some(body))
            .await;
        assert_error(response, 400, "invalid_request").await;
    }
}

#[tokio::test]
async fn metadata_is_kept_and_answered_on_every_read() {
    let app = spawn_app().await;
    let labels =
        json!({"walleot_tool": "premium_analysis", "order.id": "A-17", "note": "two\nlines"});
    let body = app
        .create_session_with(
            app.key(),
            json!({"amount": 50, "currency": "usd", "metadata": labels}),
        )
        .await;
    assert_eq!(body["metadata"], labels);
    let id = body["sessionId"].as_str().unwrap();
    let read: Value = app
        .get(&format!("/v1/sessions/{id}"), app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(read["metadata"], labels);
    let listed: Value = app
        .get("/v1/sessions?limit=1", app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"][0]["metadata"], labels);

    for request in [
        json!({"amount": 50, "currency": "usd"}),
        json!({"amount": 50, "currency": "usd", "metadata": null}),
        json!({"amount": 50, "currency": "usd", "metadata": {}}),
    ] {
        let body = app.create_session_with(app.key(), request).await;
        assert_eq!(body["metadata"], json!({}));
    }
}

#[tokio::test]
async fn bad_metadata_is_refused_before_anything_is_stored() {
    let app = spawn_app().await;
    let too_many: serde_json::Map<String, Value> =
        (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (metadata, says) in [
        (Value::Object(too_many), "51 keys"),
        (json!({"": "v"}), "key"),
        (json!({"has space": "v"}), "key"),
        (json!({"k".repeat(41): "v"}), "key"),
        (json!({"k": "v".repeat(501)}), "501 characters"),
        (json!({"k": "right\u{202E}left"}), "U+202E"),
        (json!({"k": 7}), "metadata"),
        (json!({"k": null}), "metadata"),
        (json!(["k", "v"]), "metadata"),
        (json!("k=v"), "metadata"),
    ] {
        let response = app
            .post_json(
                "/v1/sessions",
                app.key(),
                &json!({"amount": 50, "currency": "usd", "metadata": metadata}),
            )
            .await;
        let message = assert_error(response, 400, "invalid_request").await;
        assert!(
            message.contains(says) && message.contains("metadata"),
            "{metadata}: {message}"
        );
    }
    let listed: Value = app
        .get("/v1/sessions", app.key())
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(listed["data"], json!([]), "nothing was stored");
}
