//! `GET /v1/openapi.json`: the OpenAPI 3 description of the API, with this instance's
//! public address as its server.

use super::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::Value;

const DOCUMENT: &str = include_str!("openapi.json");

pub fn document_for(public_url: &str) -> Value {
    let mut doc: Value = serde_json::from_str(DOCUMENT).expect("openapi.json is valid JSON");
    doc["servers"] = serde_json::json!([{ "url": format!("{public_url}/v1") }]);
    doc
}

pub async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(document_for(&state.public_url))
}
