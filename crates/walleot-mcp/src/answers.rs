//! The answers a priced tool gives instead of its result: a payment request, a
//! refusal, a settlement still under way, a service that could not help.
//!
//! Every one of them is a tool result with `isError: true`, in every mode: the tool's
//! work was not handed out, and a client or agent that looks only at `isError` must never
//! mistake a payment link for the tool's answer. `structuredContent.status` tells them
//! apart.

use crate::price::Price;
use crate::store::PendingPayment;
use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{json, Value};
use std::time::Duration;

fn text_result(text: String, structured: Value) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(text)]);
    result.structured_content = Some(structured);
    result
}

/// The machine-readable request for payment; `status` is `payment_required` for a new
/// payment and `pending` for one the payer has not paid yet.
pub(crate) fn payment_required(
    p: &PendingPayment,
    price: &Price,
    next_step: &str,
    status: &str,
) -> CallToolResult {
    let structured = json!({
        "status": status,
        "paymentId": p.payment_id,
        "paymentUrl": p.payment_url,
        "amount": price.major_number(),
        "amountMinor": price.minor,
        "currency": price.currency.code().to_ascii_uppercase(),
        "expiresAt": p.expires_at,
        "tool": p.tool,
        "nextStep": next_step,
    });
    let text = if status == "pending" {
        format!(
            "The payment of {} is not completed yet. Open {} to pay, then {next_step}. payment_id: {}",
            price.display(),
            p.payment_url,
            p.payment_id
        )
    } else {
        format!(
            "`{}` costs {}. Open {} to pay, then {next_step}. payment_id: {}",
            p.tool,
            price.display(),
            p.payment_url,
            p.payment_id
        )
    };
    text_result(text, structured)
}

/// The tool ran and the payer approved, but the held funds are not captured yet: the
/// result waits until they are.
pub(crate) fn settling(p: &PendingPayment, retry_in: Duration, next_step: &str) -> CallToolResult {
    let secs = retry_in.as_secs().max(1);
    let message = format!(
        "The payment for `{}` is being settled (the payment service asked to wait); the result is kept: in {secs} s, {next_step} again to get it.",
        p.tool
    );
    text_result(
        message.clone(),
        json!({"status": "settling", "paymentId": p.payment_id, "retryAfter": secs, "message": message}),
    )
}

pub(crate) fn refusal(message: &str) -> CallToolResult {
    text_result(
        message.to_string(),
        json!({"status": "refused", "message": message}),
    )
}

/// Arguments the tool's schema refuses, found before any money is asked for.
pub(crate) fn invalid_arguments(tool: &str, problems: &str) -> CallToolResult {
    CallToolResult::error(vec![
        ContentBlock::text(format!("invalid arguments for `{tool}`: {problems}")),
        ContentBlock::text("invalid arguments; nothing was charged"),
    ])
}

/// A payment id this server does not know: never one it knows for another tool or
/// caller (those read the same, so nothing about them is revealed).
pub(crate) fn unknown_payment(tool: &str) -> CallToolResult {
    refusal(&format!(
        "unknown payment_id for `{tool}`: this server does not know it (it may have restarted, or the payment expired). \
         Nothing is charged for it: funds a payer approved are only held, and return to the payer by themselves at the hold deadline. \
         Call `{tool}` again for a new payment link."
    ))
}

/// The payment service did not help: unreachable, failing or rate limited. The
/// service's address and internal details go to the log, not to the client.
pub(crate) fn service_failure(error: &walleot_client::Error) -> CallToolResult {
    let message = match error.status() {
        Some(429) => {
            let secs = error.retry_after().map_or(60, |d| d.as_secs().max(1));
            tracing::warn!(%error, "the payment service is rate limiting this server");
            return text_result(
                format!(
                    "rate limited by the payment service, retry in {secs} s; nothing was charged"
                ),
                json!({"status": "rate_limited", "retryAfter": secs,
                       "message": format!("rate limited by the payment service, retry in {secs} s")}),
            );
        }
        Some(status) if status >= 500 => {
            "the payment service failed; nothing was charged, try again".to_string()
        }
        Some(_) => "the payment service refused the request; nothing was charged".to_string(),
        None => {
            "the payment service could not be reached; nothing was charged, try again".to_string()
        }
    };
    tracing::warn!(%error, "a call to the payment service failed");
    text_result(
        message.clone(),
        json!({"status": "error", "message": message}),
    )
}

/// A payment store that failed; its details go to the log.
pub(crate) fn store_failure(error: &crate::store::StoreError) -> CallToolResult {
    tracing::warn!(%error, "the payment store failed");
    let message = "the server could not keep the payment; nothing was charged, try again";
    text_result(
        message.to_string(),
        json!({"status": "error", "message": message}),
    )
}

/// A result kept from an earlier run.
pub(crate) fn cached(result: Value) -> CallToolResult {
    serde_json::from_value(result).unwrap_or_else(|_| refusal("the kept result could not be read"))
}
