use crate::helpers::spawn_app;
use reqwest::Method;
use serde_json::{json, Value};

/// Every route the service answers, with its methods.
const ROUTES: &[(&str, &str)] = &[
    ("post", "/sessions"),
    ("get", "/sessions"),
    ("get", "/sessions/{sessionId}"),
    ("post", "/sessions/{sessionId}/cancel"),
    ("post", "/sessions/{sessionId}/capture"),
    ("post", "/sessions/{sessionId}/release"),
    ("post", "/sessions/{sessionId}/refunds"),
    ("get", "/sessions/{sessionId}/refunds"),
    ("get", "/sessions/{sessionId}/receipt"),
    ("get", "/events"),
    ("post", "/test_helpers/sessions/{sessionId}/pay"),
    ("post", "/test_helpers/sessions/{sessionId}/fail"),
    ("post", "/test_helpers/sessions/{sessionId}/expire"),
    ("post", "/test_helpers/sessions/{sessionId}/grant_mandate"),
    ("get", "/openapi.json"),
    ("get", "/balance"),
    ("get", "/mandates"),
    ("get", "/mandates/{mandateId}"),
    ("post", "/webhook_endpoints"),
    ("get", "/webhook_endpoints"),
    ("get", "/webhook_endpoints/{endpointId}"),
    ("delete", "/webhook_endpoints/{endpointId}"),
    ("post", "/webhook_endpoints/{endpointId}/enable"),
    ("post", "/events/{eventId}/redeliver"),
];

async fn document(app: &crate::helpers::App) -> Value {
    let response = app
        .request(Method::GET, "/v1/openapi.json", None, None)
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("x-ratelimit-limit"));
    response.json().await.unwrap()
}

#[tokio::test]
async fn the_document_describes_every_route_and_nothing_else() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(
        doc["servers"][0]["url"],
        format!("{}/v1", app.server.public_url)
    );
    let mut documented = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                documented.push((method.clone(), path.clone()));
            }
        }
    }
    let mut expected: Vec<_> = ROUTES
        .iter()
        .map(|(m, p)| (m.to_string(), p.to_string()))
        .collect();
    documented.sort();
    expected.sort();
    assert_eq!(documented, expected);

    // Each documented route is served: it does not answer "no such route".
    for (method, path) in ROUTES {
        let path = format!(
            "/v1{}",
            path.replace("{sessionId}", "sess_000000000000000000000000")
                .replace("{mandateId}", "mdt_000000000000000000000000")
                .replace("{endpointId}", "we_000000000000000000000000")
                .replace("{eventId}", "evt_000000000000000000000000")
        );
        let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
        let response = app
            .request(method.clone(), &path, Some(app.key()), None)
            .await;
        assert_ne!(response.status(), 405, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        let message = body["error"]["message"].as_str().unwrap_or("");
        assert!(!message.contains("no such route"), "{method} {path}");
    }
}

#[tokio::test]
async fn every_operation_documents_its_errors_and_every_reference_resolves() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let responses = op["responses"]
                .as_object()
                .unwrap_or_else(|| panic!("{method} {path}: no responses"));
            assert!(
                responses.keys().any(|k| k.starts_with('2')),
                "{method} {path}: no success answer"
            );
            if path != "/openapi.json" {
                for status in ["401", "429", "500"] {
                    assert!(
                        responses.contains_key(status),
                        "{method} {path}: {status} undocumented"
                    );
                }
            }
            assert!(
                op["operationId"].is_string(),
                "{method} {path}: no operationId"
            );
        }
    }
    let text = doc.to_string();
    let mut rest = text.as_str();
    while let Some(at) = rest.find("\"$ref\":\"#/") {
        rest = &rest[at + 10..];
        let end = rest.find('"').unwrap();
        let pointer = &rest[..end];
        assert!(
            doc.pointer(&format!("/{pointer}")).is_some(),
            "dangling reference #/{pointer}"
        );
    }
}

#[tokio::test]
async fn documented_examples_match_real_answers() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let schema = &doc["components"]["schemas"]["Session"];
    let required: Vec<&str> = schema["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    let session = app
        .create_session_with(
            app.key(),
            serde_json::json!({"amount": 200, "currency": "usd"}),
        )
        .await;
    let object = session.as_object().unwrap();
    for field in &required {
        assert!(
            object.contains_key(*field),
            "answer lacks documented field {field}"
        );
    }
    for field in object.keys() {
        assert!(
            schema["properties"].get(field).is_some(),
            "field {field} is not documented"
        );
    }
}

#[tokio::test]
async fn the_documented_currency_pattern_names_exactly_the_accepted_codes() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let pattern = doc["components"]["schemas"]["CreateSessionRequest"]["properties"]["currency"]
        ["pattern"]
        .as_str()
        .unwrap();
    // `^(?:[Uu][Ss][Dd]|…)$`: each alternative is a code in either case.
    let inner = pattern
        .strip_prefix("^(?:")
        .and_then(|p| p.strip_suffix(")$"))
        .unwrap();
    let mut documented: Vec<String> = inner
        .split('|')
        .map(|alt| {
            alt.split(']')
                .filter(|part| !part.is_empty())
                .map(|part| {
                    let pair: Vec<char> = part.trim_start_matches('[').chars().collect();
                    assert_eq!(pair.len(), 2, "{alt}");
                    assert_eq!(pair[0].to_ascii_lowercase(), pair[1], "{alt}");
                    pair[0]
                })
                .collect()
        })
        .collect();
    documented.sort();
    let letters = || b'A'..=b'Z';
    let mut accepted = Vec::new();
    for a in letters() {
        for b in letters() {
            for c in letters() {
                let code = String::from_utf8(vec![a, b, c]).unwrap();
                if code.parse::<walleot_api::Currency>().is_ok() {
                    accepted.push(code);
                }
            }
        }
    }
    assert_eq!(documented, accepted);
}

#[tokio::test]
async fn the_document_describes_what_a_webhook_delivery_carries() {
    let app = spawn_app().await;
    let doc = document(&app).await;
    let delivery = &doc["webhooks"]["event"]["post"];
    assert_eq!(
        delivery["requestBody"]["content"]["application/json"]["schema"]["$ref"],
        "#/components/schemas/Event"
    );
    let headers: Vec<&str> = delivery["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        headers,
        ["webhook-id", "webhook-timestamp", "webhook-signature"]
    );
    let types = &doc["components"]["schemas"]["EventType"]["enum"];
    assert!(
        types
            .as_array()
            .unwrap()
            .contains(&json!("session.refunded")),
        "{types}"
    );
}
