//! `Idempotency-Key` on POST, after the IETF Idempotency-Key draft.
//!
//! A key is scoped to the merchant and mode of the API key that sent it. The first
//! request with a key runs; its answer is kept (for at least 24 hours) and replayed to
//! any later request with the same key and the same method, path and body, with the
//! header `Idempotent-Replayed: true`. The same key with another request answers 422;
//! a duplicate that arrives while the first still runs answers 409. Server errors and
//! answers marked [`Retryable`] are not kept, so the request can be retried.
//!
//! Nothing is written before the request runs: the key is looked up, and a duplicate
//! running in this process is seen in memory ([`InFlight`]). The answer is written once:
//! by handlers that create something in the same transaction as the thing they create
//! (see [`Recorded`]), so a crash between the two cannot let a retry create it twice;
//! for the others after they answer, through the group committer. If another process
//! sharing the database answered the same key first, that answer stands: the later
//! request of the others gets it replayed; a creation, capture or release is undone
//! and answers 409, and its retry gets the answer kept.

use super::error::{ApiError, Retryable};
use super::extract::body_rejection;
use crate::app::AppState;
use crate::domain::ports::{IdempotencyClaim, IdempotencyCompletion, StoreError};
use crate::domain::Principal;
use axum::body::{to_bytes, Body};
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use walleot_api::{headers as h, ErrorType};

/// Keys are at most this long, printable ASCII.
const MAX_KEY_LEN: usize = 255;
/// Bodies of requests and kept answers are at most this large.
pub const MAX_BODY: usize = 16 * 1024;

/// The key of the running request, for handlers that record their answer.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub scope: String,
    pub key: String,
    fingerprint: String,
    arrived_at: i64,
    retain_ms: i64,
}

impl Claimed {
    pub fn completion(&self, status: StatusCode, body: Vec<u8>) -> IdempotencyCompletion {
        IdempotencyCompletion {
            scope: self.scope.clone(),
            key: self.key.clone(),
            fingerprint: self.fingerprint.clone(),
            created_at: self.arrived_at,
            forget_before: self.arrived_at - self.retain_ms,
            status: status.as_u16(),
            body,
        }
    }
}

/// The idempotency keys of the requests running in this process, with the
/// fingerprints of those requests.
#[derive(Debug, Default)]
pub struct InFlight(std::sync::Mutex<std::collections::HashMap<(String, String), String>>);

impl InFlight {
    /// Marks `(scope, key)` running until the guard drops; if it already is, the
    /// fingerprint of the request running.
    fn enter(&self, scope: &str, key: &str, fingerprint: &str) -> Result<Running<'_>, String> {
        use std::collections::hash_map::Entry;
        let entry = (scope.to_string(), key.to_string());
        let mut running = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match running.entry(entry.clone()) {
            Entry::Occupied(other) => Err(other.get().clone()),
            Entry::Vacant(slot) => {
                slot.insert(fingerprint.to_string());
                drop(running);
                Ok(Running(self, entry))
            }
        }
    }
}

struct Running<'a>(&'a InFlight, (String, String));

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let mut running = (self.0).0.lock().unwrap_or_else(|e| e.into_inner());
        running.remove(&self.1);
    }
}

/// Set on an answer whose handler already recorded it with its own transaction.
#[derive(Debug, Clone, Copy)]
pub struct Recorded;

/// How long answers are kept and when a running claim counts as abandoned.
#[derive(Debug, Clone, Copy)]
pub struct IdempotencyPolicy {
    pub retain_ms: i64,
    pub stale_ms: i64,
}

impl Default for IdempotencyPolicy {
    fn default() -> Self {
        IdempotencyPolicy {
            retain_ms: crate::domain::clock::DAY_MS,
            stale_ms: 60 * 1000,
        }
    }
}

pub async fn idempotency(State(state): State<AppState>, req: Request, next: Next) -> Response {
    if req.method() != Method::POST {
        return next.run(req).await;
    }
    let Some(raw_key) = req.headers().get(h::IDEMPOTENCY_KEY) else {
        return next.run(req).await;
    };
    let key = match raw_key.to_str() {
        Ok(k)
            if !k.is_empty()
                && k.len() <= MAX_KEY_LEN
                && k.bytes().all(|b| b.is_ascii_graphic() || b == b' ') =>
        {
            k.to_string()
        }
        _ => {
            return ApiError::invalid(format!(
                "Idempotency-Key must be 1 to {MAX_KEY_LEN} printable ASCII characters"
            ))
            .into_response()
        }
    };
    let Some(principal) = req.extensions().get::<Principal>().cloned() else {
        return next.run(req).await;
    };
    let scope = format!("{}:{}", principal.merchant_id, principal.mode);

    let (parts, body) = req.into_parts();
    let bytes = match to_bytes(body, MAX_BODY).await {
        Ok(b) => b,
        Err(e) if super::server::is_body_timeout(&e) => {
            return super::extract::body_timed_out().into_response()
        }
        Err(_) => return body_rejection(StatusCode::PAYLOAD_TOO_LARGE).into_response(),
    };
    let fingerprint = fingerprint(&parts.method, parts.uri.path(), &bytes);
    let now = state.clock.now_ms();
    let policy = state.idempotency;
    let in_progress = || {
        ApiError::new(
            StatusCode::CONFLICT,
            ErrorType::Conflict,
            "a request with this Idempotency-Key is still being processed; retry shortly",
        )
        .into_response()
    };
    let reused = || {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::IdempotencyKeyReused,
            "this Idempotency-Key was used with a different request; use a new key",
        )
        .into_response()
    };
    let _running = match state.idempotent_in_flight.enter(&scope, &key, &fingerprint) {
        Ok(running) => running,
        Err(running) if running == fingerprint => return in_progress(),
        Err(_) => return reused(),
    };
    let earlier = state
        .store
        .look_up_idempotency_key(
            &scope,
            &key,
            &fingerprint,
            now,
            policy.stale_ms,
            policy.retain_ms,
        )
        .await;
    match earlier {
        Err(e) => return ApiError::from(e).into_response(),
        Ok(IdempotencyClaim::Mismatch) => return reused(),
        Ok(IdempotencyClaim::InProgress) => return in_progress(),
        Ok(IdempotencyClaim::Replay { status, body }) => return replay(status, body),
        Ok(IdempotencyClaim::Acquired) => {}
    }

    let claimed = Claimed {
        scope,
        key,
        fingerprint,
        arrived_at: now,
        retain_ms: policy.retain_ms,
    };
    let mut req = Request::from_parts(parts, Body::from(bytes));
    req.extensions_mut().insert(claimed.clone());
    let response = next.run(req).await;

    let status = response.status();
    if status.is_server_error()
        || response.extensions().get::<Retryable>().is_some()
        || response.extensions().get::<Recorded>().is_some()
    {
        return response;
    }
    let (parts, body) = response.into_parts();
    let bytes = match to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(_) => return ApiError::internal().into_response(),
    };
    let done = claimed.completion(status, bytes.to_vec());
    match state.store.complete_idempotency_key(&done).await {
        Ok(()) => {}
        // Another process sharing the database answered the key first: that answer is
        // the one every retry gets, so this request gets it too.
        Err(StoreError::AnsweredMeanwhile) => {
            let kept = state
                .store
                .look_up_idempotency_key(
                    &done.scope,
                    &done.key,
                    &done.fingerprint,
                    state.clock.now_ms(),
                    policy.stale_ms,
                    policy.retain_ms,
                )
                .await;
            match kept {
                Ok(IdempotencyClaim::Replay { status, body }) => return replay(status, body),
                Ok(IdempotencyClaim::Mismatch) => return reused(),
                _ => {}
            }
        }
        Err(e) => tracing::error!(error = %e, "could not record an idempotent answer"),
    }
    Response::from_parts(parts, Body::from(bytes))
}

/// Same method, path and JSON value give the same fingerprint, however the JSON is
/// spaced or its keys ordered.
fn fingerprint(method: &Method, path: &str, body: &[u8]) -> String {
    let canonical = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| serde_json::to_vec(&v).ok())
        .unwrap_or_else(|| body.to_vec());
    let mut hash = Sha256::new();
    hash.update(method.as_str().as_bytes());
    hash.update([0]);
    hash.update(path.as_bytes());
    hash.update([0]);
    hash.update(&canonical);
    hex::encode(hash.finalize())
}

fn replay(status: u16, body: Vec<u8>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        axum::http::HeaderName::from_static(h::IDEMPOTENT_REPLAYED),
        HeaderValue::from_static("true"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_running_key_is_told_apart_by_its_request_until_it_ends() {
        let in_flight = InFlight::default();
        let first = in_flight.enter("m:test", "k", "f1").unwrap();
        assert_eq!(
            in_flight.enter("m:test", "k", "f1").err().as_deref(),
            Some("f1")
        );
        assert_eq!(
            in_flight.enter("m:test", "k", "f2").err().as_deref(),
            Some("f1")
        );
        // Other keys and scopes run beside it.
        let other = in_flight.enter("m:live", "k", "f1").unwrap();
        drop(first);
        assert!(in_flight.enter("m:test", "k", "f2").is_ok());
        drop(other);
    }

    #[test]
    fn fingerprints_ignore_json_spacing_and_key_order_but_not_values() {
        let a = fingerprint(
            &Method::POST,
            "/v1/sessions",
            br#"{"amount":1,"currency":"usd"}"#,
        );
        let b = fingerprint(
            &Method::POST,
            "/v1/sessions",
            b"{ \"currency\": \"usd\", \"amount\": 1 }",
        );
        let c = fingerprint(
            &Method::POST,
            "/v1/sessions",
            br#"{"amount":2,"currency":"usd"}"#,
        );
        let d = fingerprint(
            &Method::POST,
            "/v1/sessions/x/cancel",
            br#"{"amount":1,"currency":"usd"}"#,
        );
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert_ne!(a, d);
    }
}
