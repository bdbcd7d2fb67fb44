//! The gate of `/v1`: authenticates the key, counts the request against the key's rate
//! limit, and writes the rate-limit headers on every answer, errors included.
//!
//! Requests without a valid key (and the public OpenAPI document) are counted per
//! client address, which also slows down anyone guessing keys.
//!
//! A status check (`GET /v1/sessions/{id}`) has its key and its session read together,
//! in one read when the store can (see `Keys::authenticate_reading`);
//! the session goes to the handler as [`ReadWithKey`].

use super::error::ApiError;
use crate::app::AppState;
use crate::domain::ids;
use crate::domain::keys::AuthenticateError;
use crate::domain::sessions::SessionRecord;
use crate::ratelimit::{Bucket, Decision};
use axum::extract::{ConnectInfo, OriginalUri, Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::SocketAddr;
use walleot_api::{headers as h, ErrorType};

/// Routes under `/v1` that need no key.
const PUBLIC: &[&str] = &["/v1/openapi.json"];

fn full_path(req: &Request) -> &str {
    req.extensions()
        .get::<OriginalUri>()
        .map(|uri| uri.0.path())
        .unwrap_or_else(|| req.uri().path())
}

pub async fn gate(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let now = state.clock.now_ms();
    let client = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
        .unwrap_or_else(|| "unknown".into());
    let limiter = state.limiter.clone();
    let anonymous = || limiter.check(Bucket::Anonymous, &client, now);

    if PUBLIC.contains(&full_path(&req)) {
        let decision = anonymous().await;
        return finish(decision, || next.run(req)).await;
    }

    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or(""));
    let read_with_key = match status_check_of(&req) {
        Some(id) => state
            .keys
            .authenticate_reading(header, id)
            .await
            .map(|read| {
                read.map(|(principal, session)| {
                    let id = id.to_string();
                    (principal, ReadWithKey { id, session })
                })
            }),
        None => None,
    };
    let authenticated = match read_with_key {
        Some(read) => read.map(|(principal, read)| {
            req.extensions_mut().insert(read);
            principal
        }),
        None => state.keys.authenticate(header).await,
    };
    match authenticated {
        Ok(principal) => {
            let bucket = if req.method() == Method::POST {
                Bucket::Sessions
            } else {
                Bucket::Status
            };
            let decision = state.limiter.check(bucket, &principal.key_id, now).await;
            req.extensions_mut().insert(principal);
            finish(decision, || next.run(req)).await
        }
        Err(AuthenticateError::Refused(refused)) => {
            let decision = anonymous().await;
            finish(decision, || async {
                ApiError::from(refused).into_response()
            })
            .await
        }
        Err(err @ AuthenticateError::Store(_)) => ApiError::from(err).into_response(),
    }
}

/// A session read with the key of its status check; `None` when the key's account has
/// no session `id`.
#[derive(Debug, Clone)]
pub struct ReadWithKey {
    pub id: String,
    pub session: Option<SessionRecord>,
}

/// The session id of a status check, when the request is one: a GET of
/// `/v1/sessions/{id}` whose id has a session's shape.
fn status_check_of(req: &Request) -> Option<&str> {
    if req.method() != Method::GET {
        return None;
    }
    let id = full_path(req).strip_prefix("/v1/sessions/")?;
    ids::has_shape(id, "sess").then_some(id)
}

/// Runs `inner` if the budget allows, else answers 429; either way adds the headers.
async fn finish<F, Fut>(decision: Decision, inner: F) -> Response
where
    F: FnOnce() -> Fut,
    Fut: std::future::Future<Output = Response>,
{
    let mut response = if decision.allowed {
        inner().await
    } else {
        let mut refused = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorType::RateLimited,
            format!(
                "rate limit of {} requests per {} seconds reached; retry in {} seconds",
                decision.limit, decision.window_secs, decision.reset_secs
            ),
        )
        .into_response();
        set(
            refused.headers_mut(),
            header::RETRY_AFTER,
            decision.reset_secs.to_string(),
        );
        refused
    };
    write_headers(response.headers_mut(), &decision);
    response
}

fn set(headers: &mut HeaderMap, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(name, value);
    }
}

fn write_headers(headers: &mut HeaderMap, d: &Decision) {
    let policy = d.bucket.policy_name();
    set(
        headers,
        HeaderName::from_static(h::RATE_LIMIT_LIMIT),
        d.limit.to_string(),
    );
    set(
        headers,
        HeaderName::from_static(h::RATE_LIMIT_REMAINING),
        d.remaining.to_string(),
    );
    set(
        headers,
        HeaderName::from_static(h::RATE_LIMIT_RESET),
        d.reset_secs.to_string(),
    );
    set(
        headers,
        HeaderName::from_static(h::RATE_LIMIT_POLICY),
        format!("\"{policy}\";q={};w={}", d.limit, d.window_secs),
    );
    set(
        headers,
        HeaderName::from_static(h::RATE_LIMIT),
        format!("\"{policy}\";r={};t={}", d.remaining, d.reset_secs),
    );
}
