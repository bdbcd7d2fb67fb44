//! The life of a payment behind a priced call: opened within the caps, checked with
//! the service, claimed once, its tool run, its held funds captured (or released after
//! a failure), and only then its result handed out and kept.

use super::{now_unix, Caller, Paid};
use crate::answers::{
    cached, payment_required, refusal, service_failure, settling, store_failure, unknown_payment,
};
use crate::price::Price;
use crate::store::{arguments_hash, Claim, PaymentState, PendingPayment, StoreError};
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{json, Map, Value};
use std::time::Duration;
use walleot_api::{CaptureMethod, CaptureStatus, CreateSessionRequest, SessionStatus};
use walleot_client::Session;

/// How settling a paid payment's held funds went.
enum Settlement {
    /// Captured (or released): the result may be handed out.
    Settled,
    /// The service did not settle it now (rate limited, failing, unreachable): try
    /// again after the wait.
    Later(Duration),
    /// The hold ended before it was captured: the payer was not charged.
    Lapsed,
}

/// Waits within one call are capped here; longer ones are left to the next confirm.
const LONGEST_INLINE_WAIT: Duration = Duration::from_secs(2);

/// The `_meta` key of a paid result that holds the service's signed receipt of its
/// payment (a compact JWS; check it with `walleot_client::verify_receipt`).
pub const RECEIPT_META: &str = "walleot/receipt";
const SETTLE_ATTEMPTS: u32 = 3;

/// A fresh payment id: 192 random bits, the client's proof of the right to confirm.
fn new_payment_id() -> String {
    use base64::Engine;
    use rand::RngCore;
    let mut bytes = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!(
        "pay_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

impl<S: ServerHandler> Paid<S> {
    /// Opens a payment for a call: a manual-capture session at the service and a secret
    /// payment id, within the caps on open payments. With it, the session when a
    /// mandate of the payer paid it at creation.
    pub(crate) async fn start_payment(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        price: &Price,
        caller: &Caller,
    ) -> Result<(PendingPayment, Option<Session>), CallToolResult> {
        let walleot = &self.walleot;
        let now = now_unix();
        let owner = caller.owner.clone().unwrap_or_default();
        let open = walleot
            .store
            .open_counts(&owner, now)
            .await
            .map_err(|e| store_failure(&e))?;
        let ttl_minutes = walleot.payment_ttl.as_secs().div_ceil(60);
        if caller.owner.is_some() && open.owner >= walleot.max_open_per_caller {
            return Err(refusal(&format!(
                "{} unpaid payments are open for this caller, the most allowed: pay one of them, or call again once they expire (within {ttl_minutes} min). Nothing was charged.",
                open.owner
            )));
        }
        if open.total >= walleot.max_open {
            return Err(refusal(&format!(
                "too many unpaid payments are open on this server; try again within {ttl_minutes} min. Nothing was charged."
            )));
        }
        let hash = arguments_hash(&arguments);
        let request = CreateSessionRequest {
            amount: price.minor,
            currency: price.currency.code().to_string(),
            description: Some(format!("Tool call: {tool}")),
            expires_in: Some(walleot.payment_ttl.as_secs() as i64),
            capture_method: Some(CaptureMethod::Manual),
            metadata: Some(binding_metadata(tool, &hash)),
            customer: caller.customer.clone(),
        };
        let session = walleot
            .client
            .create_session(&request)
            .await
            .map_err(|e| service_failure(&e))?;
        let pending = PendingPayment {
            payment_id: new_payment_id(),
            session_id: session.session_id.clone(),
            payment_url: session.url.clone(),
            tool: tool.to_string(),
            arguments_hash: hash,
            arguments,
            price: price.clone(),
            subject: caller.subject.clone(),
            owner,
            expires_at: session.expires_at.clone(),
            expires_unix: now + walleot.payment_ttl.as_secs() as i64,
        };
        if let Err(e) = walleot.store.put(pending.clone()).await {
            // Not kept, so nobody could confirm it: nobody must pay it either; one a
            // mandate paid at creation is released, which gives its budget back.
            let _ = match session.status {
                SessionStatus::Paid => walleot.client.release_session(&pending.session_id).await,
                _ => walleot.client.cancel_session(&pending.session_id).await,
            };
            return Err(match e {
                StoreError::Full => refusal(
                    "too many payments are open on this server; try again later. Nothing was charged.",
                ),
                e => store_failure(&e),
            });
        }
        let covered = (session.status == SessionStatus::Paid && session.mandate_id.is_some())
            .then_some(session);
        Ok((pending, covered))
    }

    /// A payment the caller may use for `tool`, or the refusal to answer. Without a
    /// subject, holding the secret payment id is the right to confirm, from any session.
    pub(crate) async fn payment_for(
        &self,
        payment_id: Option<&Value>,
        tool: &str,
        caller: &Caller,
    ) -> Result<PendingPayment, CallToolResult> {
        let Some(payment_id) = payment_id.and_then(Value::as_str) else {
            return Err(refusal("`payment_id` (a string) is required"));
        };
        match self.walleot.store.get(payment_id).await {
            // Another tool's or another subject's payment reads as unknown: nothing
            // about it is revealed.
            Ok(Some((pending, _)))
                if pending.tool == tool
                    && (pending.subject.is_none() || pending.subject == caller.subject) =>
            {
                Ok(pending)
            }
            Ok(_) => Err(unknown_payment(tool)),
            Err(e) => Err(store_failure(&e)),
        }
    }

    /// A payment the caller may use for this very call: the same tool and arguments.
    pub(crate) async fn payment_for_call(
        &self,
        payment_id: Option<&Value>,
        tool: &str,
        caller: &Caller,
        arguments: &Map<String, Value>,
    ) -> Result<PendingPayment, CallToolResult> {
        let pending = self.payment_for(payment_id, tool, caller).await?;
        if pending.arguments_hash != arguments_hash(arguments) {
            return Err(refusal(
                "this payment was made for other arguments; it cannot pay for this call",
            ));
        }
        Ok(pending)
    }

    /// Whether the session pays for this payment now; the answer to give otherwise.
    fn check_paid(
        &self,
        pending: &PendingPayment,
        price: &Price,
        next_step: &str,
        session: &Session,
    ) -> Result<(), CallToolResult> {
        if session.amount != pending.price.minor || session.currency != pending.price.currency {
            return Err(refusal("the payment does not match this tool's price"));
        }
        if session.metadata != binding_metadata(&pending.tool, &pending.arguments_hash) {
            return Err(refusal(
                "the payment was made for another tool call; it cannot pay for this one",
            ));
        }
        match (session.status, session.capture_status) {
            (
                SessionStatus::Paid,
                None | Some(CaptureStatus::Held) | Some(CaptureStatus::Captured),
            ) => Ok(()),
            (SessionStatus::Pending, _) => {
                Err(payment_required(pending, price, next_step, "pending"))
            }
            (status, _) => Err(refusal(&format!(
                "the payment is {status}; nothing was charged. Call `{}` again for a new payment link.",
                pending.tool
            ))),
        }
    }

    /// Runs the tool of a paid payment once: checks the payment with the service (or
    /// the session a wait has just `seen`), claims it, runs the tool, captures the held
    /// funds after success (or releases them after failure), and hands out and keeps
    /// the result once that is done.
    pub(crate) async fn run_paid(
        &self,
        pending: &PendingPayment,
        price: &Price,
        next_step: &str,
        seen: Option<Session>,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let store = &self.walleot.store;
        match store.get(&pending.payment_id).await {
            Ok(Some((_, PaymentState::AwaitingPayment))) => {}
            Ok(Some((_, PaymentState::Done { result, .. }))) => return Ok(cached(result).into()),
            Ok(Some((_, PaymentState::Ran { result, succeeded }))) => {
                return Ok(self
                    .settle_and_answer(pending, result, succeeded, next_step)
                    .await
                    .into())
            }
            Ok(Some((_, PaymentState::Running))) => {
                return Ok(self.wait_for_result(pending, next_step).await.into())
            }
            Ok(None) => return Ok(unknown_payment(&pending.tool).into()),
            Err(e) => return Ok(store_failure(&e).into()),
        }
        let session = match seen {
            Some(session) => session,
            None => match self.walleot.client.get_session(&pending.session_id).await {
                Ok(s) => s,
                Err(e) => return Ok(service_failure(&e).into()),
            },
        };
        if let Err(answer) = self.check_paid(pending, price, next_step, &session) {
            return Ok(answer.into());
        }
        match store.claim(&pending.payment_id).await {
            Ok(Claim::Run) => {}
            Ok(Claim::Done { result, .. }) => return Ok(cached(result).into()),
            Ok(Claim::Settle { result, succeeded }) => {
                return Ok(self
                    .settle_and_answer(pending, result, succeeded, next_step)
                    .await
                    .into())
            }
            Ok(Claim::Running) => return Ok(self.wait_for_result(pending, next_step).await.into()),
            Ok(Claim::Unknown) => return Ok(unknown_payment(&pending.tool).into()),
            Err(e) => return Ok(store_failure(&e).into()),
        }
        let mut params = CallToolRequestParams::new(pending.tool.clone());
        params.arguments = Some(pending.arguments.clone());
        let (result, succeeded) = match self.inner.call_tool(params, cx).await {
            Ok(CallToolResponse::Complete(result)) => {
                let ok = result.is_error != Some(true);
                (result, ok)
            }
            Ok(_) => (
                CallToolResult::error(vec![ContentBlock::text(
                    "the tool asked for more input, which a paid call cannot give it",
                )]),
                false,
            ),
            Err(e) => (
                CallToolResult::error(vec![ContentBlock::text(e.message.to_string())]),
                false,
            ),
        };
        let kept = serde_json::to_value(&result).unwrap_or(Value::Null);
        if let Err(e) = store
            .ran(&pending.payment_id, kept.clone(), succeeded)
            .await
        {
            tracing::warn!(payment = %pending.session_id, error = %e, "keeping a result to settle failed");
        }
        Ok(self
            .settle_and_answer(pending, kept, succeeded, next_step)
            .await
            .into())
    }

    /// Settles a payment whose tool ran, then answers: the result once captured, a
    /// "being settled" answer while the service does not capture, a refusal if the hold
    /// lapsed first. A failed tool's answer costs nothing, so it is handed out at once;
    /// its release is retried by the next confirmation if it did not go through.
    async fn settle_and_answer(
        &self,
        pending: &PendingPayment,
        result: Value,
        succeeded: bool,
        next_step: &str,
    ) -> CallToolResult {
        let store = &self.walleot.store;
        // What the call costs: nothing if it failed, else its price or, priced "up to",
        // what its result names.
        let charge = if succeeded {
            crate::price::charge_for(&pending.price, &result)
        } else {
            0
        };
        match self.settle(pending, charge).await {
            Settlement::Settled => {
                let result = if charge > 0 {
                    self.with_receipt(pending, result).await
                } else {
                    result
                };
                if let Err(e) = store
                    .finish(&pending.payment_id, result.clone(), succeeded)
                    .await
                {
                    tracing::warn!(payment = %pending.session_id, error = %e, "keeping a paid result failed");
                }
                cached(result)
            }
            // An answer that costs nothing is handed out at once; the release is
            // retried by the next confirmation if it did not go through.
            Settlement::Later(_) if charge == 0 => cached(result),
            Settlement::Later(wait) => settling(pending, wait, next_step),
            Settlement::Lapsed => {
                let refused = refusal(&format!(
                    "the payer's held funds lapsed before the payment could be captured: nothing was charged, and the result is not handed out. Call `{}` again for a new payment link.",
                    pending.tool
                ));
                let kept = serde_json::to_value(&refused).unwrap_or(Value::Null);
                if let Err(e) = store.finish(&pending.payment_id, kept, false).await {
                    tracing::warn!(payment = %pending.session_id, error = %e, "recording a lapsed payment failed");
                }
                refused
            }
        }
    }

    /// Captures (or releases) the held funds, retrying briefly under the client's
    /// idempotency keys; a wait longer than [`LONGEST_INLINE_WAIT`] is left to the next
    /// confirmation.
    /// The paid result with the service's signed receipt of its payment in
    /// `_meta["walleot/receipt"]`, so that the agent keeps proof of what it paid for; as
    /// it was if the receipt cannot be had now (the result is not held back for it).
    async fn with_receipt(&self, pending: &PendingPayment, mut result: Value) -> Value {
        match self.walleot.client.get_receipt(&pending.session_id).await {
            Ok(receipt) => {
                if let Some(object) = result.as_object_mut() {
                    let meta = object.entry("_meta").or_insert_with(|| json!({}));
                    if let Some(meta) = meta.as_object_mut() {
                        meta.insert(RECEIPT_META.into(), json!(receipt.receipt));
                    }
                }
            }
            Err(e) => {
                tracing::warn!(payment = %pending.session_id, error = %e, "fetching the receipt of a payment failed")
            }
        }
        result
    }

    /// `charge` is what to capture: the whole hold, part of it, or (0) nothing.
    async fn settle(&self, pending: &PendingPayment, charge: i64) -> Settlement {
        let client = &self.walleot.client;
        let id = &pending.session_id;
        let capture = charge > 0;
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=SETTLE_ATTEMPTS {
            let outcome = if charge >= pending.price.minor {
                client.capture_session(id).await
            } else if capture {
                client.capture_session_amount(id, charge, None).await
            } else {
                client.release_session(id).await
            };
            let error = match outcome {
                Ok(_) => return Settlement::Settled,
                Err(e) => e,
            };
            match error.status() {
                // The hold ended some other way: see how.
                Some(409) | Some(404) => {
                    return match client.get_session(id).await {
                        Ok(s) if s.capture_status == Some(CaptureStatus::Captured) => {
                            Settlement::Settled
                        }
                        Ok(_) if !capture => Settlement::Settled,
                        Ok(_) => Settlement::Lapsed,
                        Err(e) => Settlement::Later(e.retry_after().unwrap_or(backoff)),
                    }
                }
                Some(status) if status != 429 && status < 500 => {
                    tracing::warn!(payment = %id, error = %error, "the service refused to settle a payment");
                    return Settlement::Later(Duration::from_secs(60));
                }
                _ => {}
            }
            let wait = error.retry_after().unwrap_or(backoff);
            tracing::warn!(payment = %id, error = %error, attempt, "settling a payment failed");
            if attempt == SETTLE_ATTEMPTS || wait > LONGEST_INLINE_WAIT {
                return Settlement::Later(wait);
            }
            tokio::time::sleep(wait).await;
            backoff *= 2;
        }
        Settlement::Later(backoff)
    }

    /// A concurrent confirmation is running the tool: wait for its result.
    async fn wait_for_result(&self, pending: &PendingPayment, next_step: &str) -> CallToolResult {
        let deadline = tokio::time::Instant::now() + self.walleot.wait_for_payment;
        while tokio::time::Instant::now() < deadline {
            match self.walleot.store.get(&pending.payment_id).await {
                Ok(Some((_, PaymentState::Done { result, .. }))) => return cached(result),
                // The run is over and its settlement under way (or put off): settling is
                // idempotent at the service, so this confirmation settles too rather than
                // answer before the capture it may be racing.
                Ok(Some((_, PaymentState::Ran { result, succeeded }))) => {
                    return self
                        .settle_and_answer(pending, result, succeeded, next_step)
                        .await;
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        refusal("the paid tool is still running; confirm again in a moment to get its result")
    }
}

/// The session's record of what it pays for, kept by the service and answered on every
/// read: the tool and the hash of its arguments.
pub(crate) fn binding_metadata(
    tool: &str,
    arguments_hash: &str,
) -> std::collections::BTreeMap<String, String> {
    [
        ("walleot_tool".to_string(), tool.to_string()),
        (
            "walleot_arguments_hash".to_string(),
            arguments_hash.to_string(),
        ),
    ]
    .into()
}
