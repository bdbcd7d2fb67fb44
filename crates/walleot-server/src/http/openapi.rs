//! `GET /v1/openapi.json`: the OpenAPI 3.1 description of the API, with this instance's
//! public address as its server.
//!
//! The document is generated: the schemas come from the wire types of `walleot-api`
//! (`ToSchema`, its `openapi` feature), each operation from the `#[utoipa::path]` of its
//! handler, and [`Conventions`] adds what holds for every route alike because a layer
//! does it (rate-limit headers, `Idempotency-Key`, the session id parameter).

use super::{balance, events, mandates, receipts, refunds, sessions, test_helpers, webhooks};
use crate::app::AppState;
use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};
use std::sync::OnceLock;
use utoipa::openapi::path::{Operation, ParameterBuilder, ParameterIn};
use utoipa::openapi::response::{Response, ResponseBuilder};
use utoipa::openapi::schema::{ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, HeaderBuilder, Ref, RefOr, Required};
use utoipa::{Modify, OpenApi, ToResponse, ToSchema};
use walleot_api::{ErrorBody, ErrorType};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Walleot API",
        version = "1.0.0",
        description = "Create payment sessions for AI-agent tool calls and check their status. \
            Amounts are integers in the currency's minor unit (cents for USD, whole yen for \
            JPY). Every answer carries rate-limit headers; every error has the body \
            `{\"error\": {\"type\": ..., \"message\": ...}}`. POST requests accept an \
            `Idempotency-Key` header: the same key and request give the first answer again \
            (kept 24 hours), the same key with another request answers 422, and a duplicate \
            that arrives while the first still runs answers 409.",
    ),
    security(("bearerAuth" = [])),
    tags(
        (name = "sessions", description = "Payment sessions."),
        (name = "balance", description = "What the merchant has earned."),
        (name = "mandates", description = "Payers' standing permissions to charge a customer \
            reference without asking, within limits."),
        (name = "webhooks", description = "Being told of events as they happen."),
        (name = "test helpers", description = "Drive test-mode sessions without a browser."),
        (name = "meta"),
    ),
    paths(
        sessions::create,
        sessions::list,
        sessions::read,
        sessions::cancel,
        sessions::capture,
        sessions::release,
        refunds::create,
        refunds::list,
        receipts::receipt,
        events::list,
        webhooks::create,
        webhooks::list,
        webhooks::read,
        webhooks::delete,
        webhooks::enable,
        webhooks::redeliver,
        test_helpers::pay,
        test_helpers::fail,
        test_helpers::expire,
        test_helpers::grant_mandate,
        balance::balance,
        mandates::list,
        mandates::read,
        document,
    ),
    components(
        schemas(ErrorBody),
        responses(
            BadRequest,
            Unauthorized,
            Forbidden,
            NotFound,
            Conflict,
            RefundConflict,
            IdempotencyKeyReused,
            PayloadTooLarge,
            UnsupportedMediaType,
            RateLimited,
            ServerError,
            RequestTimeout,
        ),
    ),
    modifiers(&Conventions, &WebhookDeliveries),
)]
pub struct ApiDoc;

/// The document of an instance reached at `public_url`.
pub fn document_for(public_url: &str) -> Value {
    static DOCUMENT: OnceLock<Value> = OnceLock::new();
    let mut doc = DOCUMENT
        .get_or_init(|| {
            serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document serializes")
        })
        .clone();
    doc["servers"] = json!([{ "url": format!("{public_url}/v1") }]);
    doc
}

/// This document.
#[utoipa::path(
    get,
    path = "/openapi.json",
    operation_id = "getOpenApiDocument",
    tag = "meta",
    summary = "This document",
    security(),
    responses(
        (
            status = 200,
            description = "The OpenAPI document, with this service's address as its server.",
            body = Object,
        ),
        (status = 429, response = RateLimited),
    )
)]
pub(super) async fn document(State(state): State<AppState>) -> Json<Value> {
    Json(document_for(&state.public_url))
}

/// The rate-limit headers of every `/v1` answer (see the gate), in the order written.
const RATE_LIMIT_HEADERS: [&str; 5] = [
    "X-RateLimit-Limit",
    "X-RateLimit-Remaining",
    "X-RateLimit-Reset",
    "RateLimit",
    "RateLimit-Policy",
];

fn header_ref(name: &str) -> RefOr<utoipa::openapi::Header> {
    RefOr::Ref(Ref::new(format!("#/components/headers/{name}")))
}

fn parameter_ref(name: &str) -> RefOr<utoipa::openapi::path::Parameter> {
    RefOr::Ref(Ref::new(format!("#/components/parameters/{name}")))
}

/// An error answer: the error body, with an example of its type, and the rate-limit
/// headers that every answer carries; a 429 also says when to come back.
fn error_response(description: &str, kind: ErrorType, message: &str) -> Response {
    let content = ContentBuilder::new()
        .schema(Some(Ref::from_schema_name(ErrorBody::name())))
        .example(Some(
            json!({ "error": { "type": kind.as_str(), "message": message } }),
        ))
        .build();
    let mut response = ResponseBuilder::new()
        .description(description)
        .content("application/json", content)
        .build();
    for name in RATE_LIMIT_HEADERS {
        response.headers.insert(name.to_string(), header_ref(name));
    }
    if kind == ErrorType::RateLimited {
        response
            .headers
            .insert("Retry-After".to_string(), header_ref("Retry-After"));
    }
    response
}

/// Reusable error answers, `#/components/responses/NAME`, for the `responses(...)` of
/// the handlers: the error type, the example message and the description.
macro_rules! error_responses {
    ($($name:ident: $kind:ident, $message:literal, $description:literal;)*) => {$(
        #[doc = $description]
        pub struct $name;

        impl<'r> ToResponse<'r> for $name {
            fn response() -> (&'r str, RefOr<Response>) {
                let response = error_response($description, ErrorType::$kind, $message);
                (stringify!($name), RefOr::T(response))
            }
        }
    )*};
}

error_responses! {
    BadRequest: InvalidRequest, "…",
        "The request is malformed or breaks a rule; the message names the field.";
    Unauthorized: Unauthorized, "…", "The API key is missing, malformed, unknown or revoked.";
    Forbidden: Forbidden, "…", "The key may not do this (a live key on a test helper).";
    NotFound: NotFound, "…", "No such session for this key's merchant and mode.";
    Conflict: Conflict, "…",
        "The session's state forbids this, or a request with the same Idempotency-Key is \
         still running.";
    RefundConflict: InsufficientBalance, "…",
        "The merchant's available balance cannot cover the refund (`insufficient_balance`), or \
         the session has nothing captured left to refund, or a request with the same \
         Idempotency-Key is still running (`conflict`).";
    IdempotencyKeyReused: IdempotencyKeyReused, "…",
        "The Idempotency-Key was used with a different request.";
    PayloadTooLarge: InvalidRequest, "…", "The body is over 16 KiB.";
    UnsupportedMediaType: InvalidRequest, "…", "The body is not sent as application/json.";
    RateLimited: RateLimited, "…", "The key's rate limit is spent for this window.";
    ServerError: ServerError, "…",
        "The service failed; the request may be retried (with the same Idempotency-Key).";
    RequestTimeout: InvalidRequest, "the request body did not arrive in time",
        "The request body did not arrive in time.";
}

/// What holds for every operation because a layer, not the handler, does it.
struct Conventions;

impl Modify for Conventions {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearerAuth",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A secret key: `sk_test_…` sees test data only, `sk_live_…` live data \
                         only.",
                    ))
                    .build(),
            ),
        );
        components.parameters.insert(
            "SessionId".to_string(),
            RefOr::T(
                ParameterBuilder::new()
                    .name("sessionId")
                    .parameter_in(ParameterIn::Path)
                    .required(Required::True)
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .pattern(Some("^sess_[0-9A-Za-z]{24}$")),
                    ))
                    .example(Some(json!("sess_4AbCdEfGhIjKlMnOpQrStUvW")))
                    .build(),
            ),
        );
        components.parameters.insert(
            "IdempotencyKey".to_string(),
            RefOr::T(
                ParameterBuilder::new()
                    .name("Idempotency-Key")
                    .parameter_in(ParameterIn::Header)
                    .required(Required::False)
                    .description(Some(
                        "1 to 255 printable ASCII characters (spaces only inside), unique per \
                         operation (a UUID is a good choice). Scoped to the merchant and mode \
                         of the API key. Anything else answers 400.",
                    ))
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .min_length(Some(1))
                            .max_length(Some(255))
                            .pattern(Some("^[!-~](?:[ -~]{0,253}[!-~])?$")),
                    ))
                    .build(),
            ),
        );
        let headers: [(&str, &str, Type); 6] = [
            (
                "X-RateLimit-Limit",
                "Requests allowed in the current window.",
                Type::Integer,
            ),
            (
                "X-RateLimit-Remaining",
                "Requests left in the current window.",
                Type::Integer,
            ),
            (
                "X-RateLimit-Reset",
                "Seconds until the window resets (a delay, as `Retry-After` counts, not an \
                 instant).",
                Type::Integer,
            ),
            (
                "RateLimit",
                "The same, as the IETF RateLimit header fields draft writes it: \
                 `\"sessions\";r=99;t=42`.",
                Type::String,
            ),
            (
                "RateLimit-Policy",
                "The quota: `\"sessions\";q=100;w=60` (100 requests per 60 seconds).",
                Type::String,
            ),
            (
                "Retry-After",
                "Seconds to wait before trying again.",
                Type::Integer,
            ),
        ];
        for (name, description, kind) in headers {
            components.headers.insert(
                name.to_string(),
                RefOr::T(
                    HeaderBuilder::new()
                        .schema(Some(ObjectBuilder::new().schema_type(kind)))
                        .description(Some(description))
                        .build(),
                ),
            );
        }
        components.headers.insert(
            "Idempotent-Replayed".to_string(),
            RefOr::T(
                HeaderBuilder::new()
                    .schema(Some(
                        ObjectBuilder::new()
                            .schema_type(Type::String)
                            .enum_values(Some(["true"])),
                    ))
                    .description(Some(
                        "`true` when the answer is the replay of an earlier request with the \
                         same Idempotency-Key.",
                    ))
                    .build(),
            ),
        );

        for (path, item) in doc.paths.paths.iter_mut() {
            let names_a_session = path.contains("{sessionId}");
            let operations = [
                (false, item.get.as_mut()),
                (true, item.post.as_mut()),
                (false, item.put.as_mut()),
                (false, item.patch.as_mut()),
                (false, item.delete.as_mut()),
            ];
            for (post, operation) in operations {
                if let Some(operation) = operation {
                    conventions(operation, names_a_session, post);
                }
            }
        }
    }
}

/// Every answer carries the rate-limit headers (the gate writes them); a POST takes an
/// `Idempotency-Key` and may answer a replay (the idempotency layer); a path with a
/// session id takes it first.
fn conventions(operation: &mut Operation, names_a_session: bool, post: bool) {
    let parameters = operation.parameters.get_or_insert_with(Vec::new);
    if names_a_session {
        parameters.insert(0, parameter_ref("SessionId"));
    }
    if post {
        parameters.push(parameter_ref("IdempotencyKey"));
    }
    if parameters.is_empty() {
        operation.parameters = None;
    }
    for (status, response) in operation.responses.responses.iter_mut() {
        let RefOr::T(response) = response else {
            continue;
        };
        if !status.starts_with('2') {
            continue;
        }
        for name in RATE_LIMIT_HEADERS {
            response.headers.insert(name.to_string(), header_ref(name));
        }
        if post {
            response.headers.insert(
                "Idempotent-Replayed".to_string(),
                header_ref("Idempotent-Replayed"),
            );
        }
    }
}

/// The `event` webhook: what each delivery to an endpoint carries.
struct WebhookDeliveries;

impl Modify for WebhookDeliveries {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
        use utoipa::openapi::request_body::RequestBodyBuilder;
        use utoipa::openapi::PathsBuilder;
        let header = |name: &str, description: &str| {
            ParameterBuilder::new()
                .name(name)
                .parameter_in(ParameterIn::Header)
                .required(Required::True)
                .description(Some(description))
                .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
                .build()
        };
        let operation = OperationBuilder::new()
            .operation_id(Some("event"))
            .tag("webhooks")
            .summary(Some(
                "An event, posted to each endpoint that takes its type",
            ))
            .description(Some(
                "Posted as it happens (the Standard Webhooks scheme). Verify the signature \
                 before trusting the body: `webhook-signature` holds `v1,` and the base64 \
                 HMAC-SHA256, keyed by the base64-decoded part of the secret after `whsec_`, \
                 of `{webhook-id}.{webhook-timestamp}.{body}`; refuse timestamps more than a \
                 few minutes off. Answer 2xx within 10 seconds; anything else is retried 5 s, \
                 5 min, 30 min, 2 h, 5 h, 10 h and 10 h later, always with the same \
                 `webhook-id`, so that a repeat can be recognised. An endpoint failing for \
                 5 days is disabled.",
            ))
            .parameter(header(
                "webhook-id",
                "The event's id: the same on every attempt.",
            ))
            .parameter(header(
                "webhook-timestamp",
                "Seconds since the Unix epoch when this attempt was signed.",
            ))
            .parameter(header(
                "webhook-signature",
                "`v1,` and the base64 signature; several may come, space-separated.",
            ))
            .request_body(Some(
                RequestBodyBuilder::new()
                    .content(
                        "application/json",
                        ContentBuilder::new()
                            .schema(Some(Ref::from_schema_name(walleot_api::Event::name())))
                            .build(),
                    )
                    .required(Some(Required::True))
                    .build(),
            ))
            .response(
                "2XX",
                ResponseBuilder::new().description("Received; not sent again."),
            )
            .security(utoipa::openapi::security::SecurityRequirement::default())
            .build();
        doc.webhooks = Some(
            PathsBuilder::new()
                .path("event", PathItem::new(HttpMethod::Post, operation))
                .build(),
        );
    }
}
