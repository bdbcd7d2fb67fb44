//! OpenAPI schemas of the wire types whose JSON form is written by hand (the currency
//! code and the error type), and of the currency code a request may send. Built only with
//! the `openapi` feature.

use crate::currency::CODES;
use crate::{Currency, ErrorType};
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{PartialSchema, ToSchema};

/// Plain visible text, as `description` and metadata values must be: no control
/// characters but the newline, no Unicode format characters (Cf) nor line or paragraph
/// separators.
pub const PLAIN_TEXT: &str = r"^[^\u0000-\u0009\u000B-\u001F\u007F-\u009F\u00AD\u0600-\u0605\u061C\u06DD\u070F\u0890\u0891\u08E2\u180E\u200B-\u200F\u2028-\u202E\u2060-\u2064\u2066-\u206F\uFEFF\uFFF9-\uFFFB]*$";

/// The `metadata` of a request: at most 50 keys of 1 to 40 name characters, each with
/// plain visible text of at most 500 characters.
pub fn metadata_request() -> Schema {
    let value = ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(500))
        .pattern(Some(PLAIN_TEXT));
    let name = ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some("^[A-Za-z0-9_.-]{1,40}$"));
    ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::SchemaType::from_iter([
            Type::Object,
            Type::Null,
        ]))
        .max_properties(Some(50))
        .property_names(Some(name))
        .additional_properties(Some(value))
        .into()
}

/// A currency as the API answers it: the lower-case ISO 4217 code.
impl PartialSchema for Currency {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[a-z]{3}$"))
            .description(Some("ISO 4217 code, lower case."))
            .examples(["usd"])
            .into()
    }
}

impl ToSchema for Currency {}

/// The error types the service answers. [`ErrorType::Unknown`] is the client's name for
/// a type it does not know yet, never one that is sent.
const SENT: [ErrorType; 11] = [
    ErrorType::InvalidRequest,
    ErrorType::Unauthorized,
    ErrorType::PaymentRequired,
    ErrorType::Forbidden,
    ErrorType::NotFound,
    ErrorType::MethodNotAllowed,
    ErrorType::Conflict,
    ErrorType::InsufficientBalance,
    ErrorType::IdempotencyKeyReused,
    ErrorType::RateLimited,
    ErrorType::ServerError,
];

impl PartialSchema for ErrorType {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(SENT.map(ErrorType::as_str)))
            .into()
    }
}

impl ToSchema for ErrorType {}

/// The `currency` of a request: a code of [`Currency`]'s table in any case, so that a
/// client can tell before sending that the service knows it.
pub fn currency_in_any_case() -> Schema {
    let alternatives: Vec<String> = CODES
        .iter()
        .map(|code| {
            code.chars()
                .map(|c| format!("[{c}{}]", c.to_ascii_lowercase()))
                .collect()
        })
        .collect();
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(format!("^(?:{})$", alternatives.join("|"))))
        .description(Some(
            "ISO 4217 code of a currency with a minor unit, in any case; stored and answered \
             lower case.",
        ))
        .examples(["usd"])
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sent_error_type_is_documented_and_unknown_is_not() {
        let RefOr::T(Schema::Object(schema)) = ErrorType::schema() else {
            panic!("not an inline object");
        };
        let values = schema.enum_values.unwrap();
        assert_eq!(values.len(), SENT.len());
        assert!(!values.contains(&serde_json::json!("unknown")));
        for kind in SENT {
            assert_eq!(
                serde_json::to_value(kind).unwrap(),
                serde_json::json!(kind.as_str())
            );
        }
    }
}
