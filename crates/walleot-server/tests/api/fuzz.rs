//! Random input never breaks the API: whatever the body, path or header, the answer is
//! an error of the documented shape or a success, never a 500 or an HTML page.

use crate::helpers::spawn_app;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;
use serde_json::Value;

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        "[a-zA-Z0-9 _\\-\u{00e9}\u{1F600}]{0,12}".prop_map(Value::String),
        Just(Value::String("usd".into())),
    ];
    leaf.prop_recursive(3, 24, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("amount".to_string()),
                    Just("currency".to_string()),
                    Just("description".to_string()),
                    Just("expiresIn".to_string()),
                    Just("captureMethod".to_string()),
                    "[a-z]{1,8}",
                ],
                inner,
                0..5
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[derive(Debug, Clone)]
enum Probe {
    Json(Value),
    Bytes(Vec<u8>),
    Path(String),
    Header(Vec<u8>),
}

fn probe() -> impl Strategy<Value = Probe> {
    prop_oneof![
        4 => json_value().prop_map(Probe::Json),
        2 => prop::collection::vec(any::<u8>(), 0..64).prop_map(Probe::Bytes),
        2 => "[a-zA-Z0-9_%./\\-]{0,40}".prop_map(Probe::Path),
        1 => prop::collection::vec(32u8..127, 0..80).prop_map(Probe::Header),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_requests_never_get_a_500_or_a_non_json_answer() {
    let app = spawn_app().await;
    // A fixed seed: a failure names its probe and reproduces on every run.
    let mut runner = TestRunner::deterministic();
    let mut probes = Vec::new();
    for _ in 0..300 {
        probes.push(probe().new_tree(&mut runner).unwrap().current());
    }
    for probe in probes {
        let request = match &probe {
            Probe::Json(value) => app
                .http
                .post(app.url("/v1/sessions"))
                .bearer_auth(app.key())
                .header("content-type", "application/json")
                .body(value.to_string()),
            Probe::Bytes(bytes) => app
                .http
                .post(app.url("/v1/sessions"))
                .bearer_auth(app.key())
                .header("content-type", "application/json")
                .body(bytes.clone()),
            Probe::Path(path) => app
                .http
                .get(app.url(&format!("/v1/sessions/{path}")))
                .bearer_auth(app.key()),
            Probe::Header(raw) => app.http.get(app.url("/v1/sessions")).header(
                "authorization",
                reqwest::header::HeaderValue::from_bytes(raw).unwrap(),
            ),
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        assert!(status < 500, "{probe:?} answered {status}");
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string());
        assert_eq!(
            content_type.as_deref(),
            Some("application/json"),
            "{probe:?}"
        );
        let body: Value = response
            .json()
            .await
            .unwrap_or_else(|_| panic!("{probe:?}: not JSON"));
        if status >= 400 {
            assert!(
                body["error"]["type"].is_string() && body["error"]["message"].is_string(),
                "{probe:?}: {body}"
            );
        }
    }
}
