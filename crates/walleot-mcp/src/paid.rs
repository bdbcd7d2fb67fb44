//! [`Paid`]: an rmcp server with prices on some of its tools.
//!
//! The wrapper is itself a [`ServerHandler`]: it adds each price to the tool's `_meta`
//! in tools/list, adds the confirm tools or `payment_id` arguments its mode needs, and
//! stands in front of every tools/call of a priced tool. Everything else goes to the
//! wrapped server unchanged.
//!
//! A priced call checks its arguments against the tool's input schema, opens a payment
//! (a manual-capture session at the service, and a secret payment id for the client),
//! and then, depending on the mode, answers with the link or waits for the payer. A
//! paid payment is claimed once, its tool run, the held funds captured (or released
//! after a failure), and only then is the result handed out and kept.

use crate::answers::{
    cached, payment_required, refusal, service_failure, settling, store_failure, unknown_payment,
};
use crate::mode::Mode;
use crate::price::Price;
use crate::store::{arguments_hash, Claim, PaymentState, PendingPayment, StoreError};
use crate::{seal, Walleot};
use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use walleot_api::{CaptureMethod, CaptureStatus, CreateSessionRequest, SessionStatus};
use walleot_client::Session;

/// Name of the companion tool that confirms a payment for `tool`.
pub fn confirm_tool_name(tool: &str) -> String {
    format!("confirm_{tool}_payment")
}

/// A server whose priced tools are paid through Walleot.
pub struct Paid<S> {
    inner: S,
    walleot: Arc<Walleot>,
    /// Stands for the MCP session where the transport gives no session id (stdio, where
    /// one handler serves one connection).
    connection: String,
}

/// Who is calling.
struct Caller {
    /// The authenticated subject, where the server names one: payments are bound to it.
    subject: Option<String>,
    /// What the per-caller cap and the listed confirm tools go by: the subject, the MCP
    /// session or the stdio connection. `None` for an anonymous stateless request,
    /// which has nothing to be told apart by.
    owner: Option<String>,
}

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
const SETTLE_ATTEMPTS: u32 = 3;

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

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

fn is_newer(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

/// The client's declared elicitation capability, if any.
fn client_elicitation(cx: &RequestContext<RoleServer>) -> Option<ElicitationCapability> {
    cx.client_capabilities().and_then(|c| c.elicitation)
}

/// Stateless HTTP: requests arrive without a session, and the server cannot send
/// requests (such as elicitations) back to the client.
fn stateless(cx: &RequestContext<RoleServer>) -> bool {
    cx.extensions
        .get::<http::request::Parts>()
        .is_some_and(|parts| !parts.headers.contains_key("mcp-session-id"))
}

impl<S: ServerHandler> Paid<S> {
    pub(crate) fn new(inner: S, walleot: Arc<Walleot>) -> Self {
        Paid {
            inner,
            walleot,
            connection: uuid::Uuid::new_v4().to_string(),
        }
    }

    /// Tells the client its tool list changed: a notification on MCP 2025-11-25 and
    /// earlier, an event on the `subscriptions/listen` stream on 2026-07-28.
    async fn announce_tool_list_change(&self, cx: &RequestContext<RoleServer>) {
        if is_newer(cx) {
            let _ = self.walleot.changes.send(());
        } else {
            let _ = cx.peer.notify_tool_list_changed().await;
        }
    }

    /// The mode for this client: elicitation (chosen, or picked by AUTO) only where the
    /// client declares it (a capability that is missing or null counts as absent), else
    /// two steps.
    fn mode_for(&self, cx: &RequestContext<RoleServer>) -> Mode {
        match self.walleot.mode {
            Mode::Auto | Mode::Elicitation if client_elicitation(cx).is_some() => Mode::Elicitation,
            Mode::Auto | Mode::Elicitation => Mode::TwoStep,
            other => other,
        }
    }

    /// Who is calling. Never anything the client can choose in `_meta`.
    fn caller(&self, cx: &RequestContext<RoleServer>) -> Caller {
        let subject = self
            .walleot
            .identify
            .as_ref()
            .and_then(|identify| identify(cx));
        let owner = match &subject {
            Some(subject) => Some(format!("subject:{subject}")),
            None => match cx.extensions.get::<http::request::Parts>() {
                // HTTP: the session, where there is one.
                Some(parts) => parts
                    .headers
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(|id| format!("mcp-session:{id}")),
                // stdio: one handler serves one connection.
                None => Some(format!("connection:{}", self.connection)),
            },
        };
        Caller { subject, owner }
    }

    /// Whether the confirm tool of `tool` is listed for `owner`: always, except in
    /// RESUBMIT (no confirm tools) and DYNAMIC_TOOLS (only while a payment of the caller
    /// is open; an anonymous stateless caller, who cannot be told apart, always sees it).
    fn lists_confirm(&self, tool: &str, owner: Option<&str>) -> bool {
        match (self.walleot.mode, owner) {
            (Mode::Resubmit, _) => false,
            (Mode::DynamicTools, Some(owner)) => self.walleot.open.is_open(owner, tool, now_unix()),
            _ => true,
        }
    }

    /// The priced tool a confirm tool name stands for. A confirmation is accepted
    /// whether or not its tool is listed now: the payment id is what it takes.
    fn confirmed_tool(&self, name: &str) -> Option<String> {
        let tool = name.strip_prefix("confirm_")?.strip_suffix("_payment")?;
        (self.walleot.prices.contains_key(tool) && self.walleot.mode != Mode::Resubmit)
            .then(|| tool.to_string())
    }

    /// Checks the arguments against the tool's input schema before any money is asked
    /// for; a tool that publishes no schema is not checked.
    fn validate(&self, tool: &str, arguments: &Map<String, Value>) -> Result<(), McpError> {
        let validator = {
            let mut cache = self
                .walleot
                .validators
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            match cache.get(tool) {
                Some(validator) => validator.clone(),
                None => {
                    let Some(schema) = self.inner.get_tool(tool).map(|t| t.input_schema) else {
                        return Ok(());
                    };
                    let Ok(validator) =
                        jsonschema::validator_for(&Value::Object((*schema).clone()))
                    else {
                        return Ok(());
                    };
                    let validator = Arc::new(validator);
                    cache.insert(tool.to_string(), validator.clone());
                    validator
                }
            }
        };
        let instance = Value::Object(arguments.clone());
        if validator.is_valid(&instance) {
            return Ok(());
        }
        let problems: Vec<String> = validator
            .iter_errors(&instance)
            .take(5)
            .map(|e| match e.instance_path().to_string() {
                path if path.is_empty() => e.to_string(),
                path => format!("{path}: {e}"),
            })
            .collect();
        if problems.is_empty() {
            return Ok(());
        }
        Err(McpError::invalid_params(
            format!(
                "invalid arguments for `{tool}` ({}); nothing was charged",
                problems.join("; ")
            ),
            None,
        ))
    }

    /// Opens a payment for a call: a manual-capture session at the service and a secret
    /// payment id, within the caps on open payments.
    async fn start_payment(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        price: &Price,
        caller: &Caller,
    ) -> Result<PendingPayment, CallToolResult> {
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
        let request = CreateSessionRequest {
            amount: price.minor,
            currency: price.currency.code().to_string(),
            description: Some(format!("Tool call: {tool}")),
            expires_in: Some(walleot.payment_ttl.as_secs() as i64),
            capture_method: Some(CaptureMethod::Manual),
        };
        let session = walleot
            .client
            .create_session(&request)
            .await
            .map_err(|e| service_failure(&e))?;
        let pending = PendingPayment {
            payment_id: new_payment_id(),
            session_id: session.session_id,
            payment_url: session.url,
            tool: tool.to_string(),
            arguments_hash: arguments_hash(&arguments),
            arguments,
            amount_minor: price.minor,
            currency: price.currency.code().to_string(),
            subject: caller.subject.clone(),
            owner,
            expires_at: session.expires_at,
            expires_unix: now + walleot.payment_ttl.as_secs() as i64,
        };
        if let Err(e) = walleot.store.put(pending.clone()).await {
            // Not kept, so nobody could confirm it: nobody must pay it either.
            let _ = walleot.client.cancel_session(&pending.session_id).await;
            return Err(match e {
                StoreError::Full => refusal(
                    "too many payments are open on this server; try again later. Nothing was charged.",
                ),
                e => store_failure(&e),
            });
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
        if session.amount != pending.amount_minor || session.currency.code() != pending.currency {
            return Err(refusal("the payment does not match this tool's price"));
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

    /// Runs the tool of a paid payment once: checks the payment with the service,
    /// claims it, runs the tool, captures the held funds after success (or releases
    /// them after failure), and hands out and keeps the result once that is done.
    async fn run_paid(
        &self,
        pending: &PendingPayment,
        price: &Price,
        next_step: &str,
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
        let session = match self.walleot.client.get_session(&pending.session_id).await {
            Ok(s) => s,
            Err(e) => return Ok(service_failure(&e).into()),
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
        match self.settle(pending, succeeded).await {
            Settlement::Settled => {
                if let Err(e) = store
                    .finish(&pending.payment_id, result.clone(), succeeded)
                    .await
                {
                    tracing::warn!(payment = %pending.session_id, error = %e, "keeping a paid result failed");
                }
                cached(result)
            }
            Settlement::Later(_) if !succeeded => cached(result),
            Settlement::Later(wait) => {
                let again = next_step
                    .split(" once paid")
                    .next()
                    .unwrap_or(next_step)
                    .replace("call", "Call");
                settling(pending, wait, &again)
            }
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
    async fn settle(&self, pending: &PendingPayment, capture: bool) -> Settlement {
        let client = &self.walleot.client;
        let id = &pending.session_id;
        let mut backoff = Duration::from_millis(200);
        for attempt in 1..=SETTLE_ATTEMPTS {
            let outcome = if capture {
                client.capture_session(id).await
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
                Ok(Some((
                    _,
                    PaymentState::Ran {
                        result,
                        succeeded: false,
                    },
                ))) => return cached(result),
                Ok(Some((_, PaymentState::Ran { .. }))) => {
                    let again = next_step.split(" once paid").next().unwrap_or(next_step);
                    return settling(
                        pending,
                        Duration::from_secs(1),
                        &again.replace("call", "Call"),
                    );
                }
                _ => {}
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        refusal("the paid tool is still running; confirm again in a moment to get its result")
    }

    /// A payment the caller may use for `tool`, or the refusal to answer. Without a
    /// subject, holding the secret payment id is the right to confirm, from any session.
    async fn payment_for(
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

    async fn confirm(
        &self,
        tool: &str,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let price = self.walleot.prices[tool].clone();
        let caller = self.caller(&cx);
        let arguments = request.arguments.unwrap_or_default();
        let pending = match self
            .payment_for(arguments.get("payment_id"), tool, &caller)
            .await
        {
            Ok(p) => p,
            Err(refused) => return Ok(refused.into()),
        };
        let next = format!(
            "call `{}` with this payment_id once paid",
            confirm_tool_name(tool)
        );
        let announce = cx.clone();
        let answer = self.run_paid(&pending, &price, &next, cx).await;
        if self.walleot.mode == Mode::DynamicTools {
            // The confirm tool goes once its result is handed out or the payment ended
            // unpaid; a confirmation is still accepted after that.
            let delivered = matches!(
                self.walleot.store.get(&pending.payment_id).await,
                Ok(Some((_, PaymentState::Done { .. })))
            );
            let ended = matches!(&answer, Ok(CallToolResponse::Complete(r))
                if r.structured_content.as_ref().and_then(|s| s.get("status")) == Some(&json!("refused")));
            if (delivered || ended)
                && self
                    .walleot
                    .open
                    .close(&pending.owner, tool, &pending.payment_id, now_unix())
            {
                self.announce_tool_list_change(&announce).await;
            }
        }
        answer
    }

    async fn priced_call(
        &self,
        tool: &str,
        price: Price,
        request: CallToolRequestParams,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let caller = self.caller(&cx);
        let mut arguments = request.arguments.unwrap_or_default();
        let mode = self.mode_for(&cx);
        if self.walleot.mode == Mode::Resubmit {
            if let Some(payment_id) = arguments.remove("payment_id") {
                return self
                    .resubmitted(tool, &price, payment_id, arguments, &caller, cx)
                    .await;
            }
        }
        let elicits = matches!(self.walleot.mode, Mode::Elicitation | Mode::Auto);
        if let (true, Some(state)) = (elicits && is_newer(&cx), request.request_state) {
            let responses = request.input_responses.unwrap_or_default();
            return self
                .input_returned(tool, &price, arguments, &caller, &state, responses, cx)
                .await;
        }
        self.validate(tool, &arguments)?;
        let pending = match self.start_payment(tool, arguments, &price, &caller).await {
            Ok(p) => p,
            Err(refused) => return Ok(refused.into()),
        };
        let confirm_next = format!(
            "call `{}` with this payment_id once paid",
            confirm_tool_name(tool)
        );
        match mode {
            Mode::Resubmit => {
                let next = format!(
                    "call `{tool}` again with the same arguments and this payment_id once paid"
                );
                Ok(payment_required(&pending, &price, &next, "payment_required").into())
            }
            Mode::DynamicTools => {
                let next = format!(
                    "call `{}` (now in the tool list) with this payment_id once paid",
                    confirm_tool_name(tool)
                );
                if let Some(owner) = &caller.owner {
                    let now = now_unix();
                    if self.walleot.open.open(
                        owner,
                        tool,
                        &pending.payment_id,
                        pending.expires_unix,
                        now,
                    ) {
                        self.announce_tool_list_change(&cx).await;
                    }
                }
                Ok(payment_required(&pending, &price, &next, "payment_required").into())
            }
            Mode::Progress => self.progress_call(pending, price, cx).await,
            Mode::Elicitation if is_newer(&cx) => Ok(self.input_required(&pending, &price, &cx)),
            Mode::Elicitation => self.elicitation_call(pending, price, cx).await,
            Mode::TwoStep | Mode::Auto => {
                Ok(payment_required(&pending, &price, &confirm_next, "payment_required").into())
            }
        }
    }

    /// RESUBMIT's second call: the same arguments with the payment id.
    async fn resubmitted(
        &self,
        tool: &str,
        price: &Price,
        payment_id: Value,
        arguments: Map<String, Value>,
        caller: &Caller,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let pending = match self.payment_for(Some(&payment_id), tool, caller).await {
            Ok(p) => p,
            Err(refused) => return Ok(refused.into()),
        };
        if pending.arguments_hash != arguments_hash(&arguments) {
            return Ok(refusal(
                "this payment was made for other arguments; it cannot pay for this call",
            )
            .into());
        }
        let next =
            format!("call `{tool}` again with the same arguments and this payment_id once paid");
        self.run_paid(&pending, price, &next, cx).await
    }

    /// What the client is asked to show: the payment link (URL elicitation where it
    /// declares that mode), else a form whose `paid` box the payer ticks once done.
    fn elicitation_request(
        &self,
        pending: &PendingPayment,
        price: &Price,
        url_mode: bool,
    ) -> Option<ElicitRequestParams> {
        let message = format!(
            "`{}` costs {}. Pay at {}",
            pending.tool,
            price.display(),
            pending.payment_url
        );
        if url_mode {
            return Some(ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message,
                url: pending.payment_url.clone(),
                elicitation_id: pending.payment_id.clone(),
            });
        }
        let schema = ElicitationSchema::builder()
            .required_bool("paid")
            .build()
            .ok()?;
        Some(ElicitRequestParams::FormElicitationParams {
            meta: None,
            message: format!("{message}, then confirm here."),
            requested_schema: schema,
        })
    }

    /// MCP 2026-07-28 forbids server-to-client requests: the call answers an
    /// `InputRequiredResult` asking the client to show the payment link, with the payment
    /// sealed in the request state; the client's retry carries the state back, and the
    /// tool runs once the payment is made. The seal binds the retry to this payment, tool
    /// and arguments, whichever server instance receives it.
    fn input_required(
        &self,
        pending: &PendingPayment,
        price: &Price,
        cx: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let url_mode = client_elicitation(cx).is_some_and(|c| c.url.is_some());
        let Some(request) = self.elicitation_request(pending, price, url_mode) else {
            let next = format!(
                "call `{}` with this payment_id once paid",
                confirm_tool_name(&pending.tool)
            );
            return payment_required(pending, price, &next, "payment_required").into();
        };
        let mut requests = InputRequests::new();
        requests.insert(
            "payment".into(),
            InputRequest::Elicitation(ElicitRequest::new(request)),
        );
        InputRequiredResult::new(
            Some(requests),
            Some(seal::seal(&self.walleot.state_secret, &pending.payment_id)),
        )
        .into()
    }

    /// The retry of an input-required round trip: the payer's answer and the sealed
    /// payment.
    #[allow(clippy::too_many_arguments)]
    async fn input_returned(
        &self,
        tool: &str,
        price: &Price,
        arguments: Map<String, Value>,
        caller: &Caller,
        state: &str,
        responses: InputResponses,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let Some(payment_id) = seal::open(&self.walleot.state_secret, state) else {
            return Ok(refusal("the request state is not valid; call the tool again").into());
        };
        let pending = match self
            .payment_for(Some(&json!(payment_id)), tool, caller)
            .await
        {
            Ok(p) => p,
            Err(refused) => return Ok(refused.into()),
        };
        if pending.arguments_hash != arguments_hash(&arguments) {
            return Ok(refusal(
                "this payment was made for other arguments; it cannot pay for this call",
            )
            .into());
        }
        let next = format!("call `{tool}` again once paid");
        let answer = responses.get("payment");
        let action = answer.and_then(|a| a.get("action")).and_then(Value::as_str);
        let says_unpaid = answer
            .and_then(|a| a.get("content"))
            .and_then(|c| c.get("paid"))
            == Some(&Value::Bool(false));
        match action {
            Some("accept") => {}
            Some("decline") => return Ok(self.declined(&pending).await.into()),
            // Dismissed without an answer: the link stays payable.
            _ => {
                let next = format!(
                    "call `{}` with this payment_id once paid",
                    confirm_tool_name(tool)
                );
                return Ok(payment_required(&pending, price, &next, "payment_required").into());
            }
        }
        let wait = if says_unpaid {
            Duration::ZERO
        } else {
            self.walleot.wait_for_payment
        };
        if let Err(answer) = self
            .await_payment(&pending, price, &next, &cx, wait, None)
            .await
        {
            return Ok(answer.into());
        }
        self.run_paid(&pending, price, &next, cx).await
    }

    /// The payer declined: the session is cancelled, so nothing will be paid.
    async fn declined(&self, pending: &PendingPayment) -> CallToolResult {
        let _ = self
            .walleot
            .client
            .cancel_session(&pending.session_id)
            .await;
        refusal("the payer declined the payment; nothing was charged")
    }

    /// Waits until the payer has paid, within `wait`, with long polls of the service
    /// (a payment is seen as soon as it is made); the answer to give otherwise. Where the
    /// call has a progress token, each poll first reports progress (with `message`, or a
    /// default one), so that clients and sessions do not time out; a client that no
    /// longer takes progress has gone, and the wait ends.
    async fn await_payment(
        &self,
        pending: &PendingPayment,
        price: &Price,
        next: &str,
        cx: &RequestContext<RoleServer>,
        wait: Duration,
        message: Option<String>,
    ) -> Result<(), CallToolResult> {
        let deadline = tokio::time::Instant::now() + wait;
        let token = cx.meta.get_progress_token();
        let message = message.unwrap_or_else(|| {
            format!(
                "Waiting for the payment of {} at {}",
                price.display(),
                pending.payment_url
            )
        });
        let pending_answer = || payment_required(pending, price, next, "pending");
        let mut step = 0.0;
        loop {
            if let Some(token) = &token {
                step += 1.0;
                let progress = ProgressNotificationParam::new(token.clone(), step)
                    .with_message(message.clone());
                if cx.peer.notify_progress(progress).await.is_err() {
                    return Err(pending_answer());
                }
            }
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let poll = left.min(self.walleot.poll_every.max(Duration::from_secs(1)));
            let client = &self.walleot.client;
            let seen = tokio::select! {
                seen = async {
                    if poll.is_zero() {
                        client.get_session(&pending.session_id).await
                    } else {
                        client.wait_session(&pending.session_id, poll).await
                    }
                } => seen,
                _ = cx.ct.cancelled() => return Err(pending_answer()),
            };
            match seen {
                Ok(s) if s.status == SessionStatus::Paid => return Ok(()),
                Ok(s) if s.status != SessionStatus::Pending => {
                    return Err(refusal(&format!(
                        "the payment is {}; nothing was charged",
                        s.status
                    )))
                }
                Ok(_) => {}
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(service_failure(&e))
                }
                // A failing poll is not retried at once.
                Err(e) => {
                    let pause = e
                        .retry_after()
                        .unwrap_or(Duration::from_secs(1))
                        .min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = cx.ct.cancelled() => return Err(pending_answer()),
                    }
                }
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(pending_answer());
            }
        }
    }

    /// Asks the client to show the payment link (URL elicitation where declared, else a
    /// form) and waits for the payer; then runs the tool in the same call. A timeout, a
    /// dismissed request or a payment still open gets the two-step answer.
    async fn elicitation_call(
        &self,
        pending: PendingPayment,
        price: Price,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = format!(
            "call `{}` with this payment_id once paid",
            confirm_tool_name(&pending.tool)
        );
        let fallback = || payment_required(&pending, &price, &next, "payment_required");
        let Some(capability) = client_elicitation(&cx) else {
            return Ok(fallback().into());
        };
        let url_mode = capability.url.is_some();
        if stateless(&cx) {
            // No way to send the elicitation: tell a URL-capable client which URL to open
            // (error -32042 of MCP 2025-11-25); others get two steps.
            if url_mode {
                return Err(McpError::new(
                    ErrorCode(-32042),
                    "URL elicitation required: open the payment link, then call the tool again",
                    Some(json!({"elicitations": [{
                        "mode": "url",
                        "elicitationId": pending.payment_id,
                        "url": pending.payment_url,
                        "message": format!("`{}` costs {}", pending.tool, price.display()),
                    }]})),
                ));
            }
            return Ok(fallback().into());
        }
        let Some(request) = self.elicitation_request(&pending, &price, url_mode) else {
            return Ok(fallback().into());
        };
        let answer = cx
            .peer
            .create_elicitation_with_timeout(request, Some(self.walleot.wait_for_payment))
            .await;
        let says_unpaid = match answer {
            Ok(result) if result.action == ElicitationAction::Accept => {
                result.content.as_ref().and_then(|c| c.get("paid")) == Some(&Value::Bool(false))
            }
            Ok(result) if result.action == ElicitationAction::Decline => {
                return Ok(self.declined(&pending).await.into())
            }
            // Dismissed by the client, or no answer in time: the link stays payable.
            Ok(_) | Err(_) => return Ok(fallback().into()),
        };
        let wait = if says_unpaid {
            Duration::ZERO
        } else {
            self.walleot.wait_for_payment
        };
        if let Err(answer) = self
            .await_payment(&pending, &price, &next, &cx, wait, None)
            .await
        {
            return Ok(answer.into());
        }
        if url_mode {
            let done = CustomNotification::new(
                "notifications/elicitation/complete",
                Some(json!({"elicitationId": pending.payment_id})),
            );
            let _ = cx
                .peer
                .send_notification(ServerNotification::CustomNotification(done))
                .await;
        }
        self.run_paid(&pending, &price, &next, cx).await
    }

    /// Streams the payment link in progress notifications while waiting for the payer,
    /// then runs the tool in the same call. Without a progress token, or when the wait
    /// ends, the answer names the confirm tool instead, so that nothing is lost.
    async fn progress_call(
        &self,
        pending: PendingPayment,
        price: Price,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = format!(
            "call `{}` with this payment_id once paid",
            confirm_tool_name(&pending.tool)
        );
        if cx.meta.get_progress_token().is_none() {
            return Ok(payment_required(&pending, &price, &next, "payment_required").into());
        }
        let message = format!(
            "Payment of {} required: open {}",
            price.display(),
            pending.payment_url
        );
        let wait = self.walleot.wait_for_payment;
        match self
            .await_payment(&pending, &price, &next, &cx, wait, Some(message))
            .await
        {
            Ok(()) => self.run_paid(&pending, &price, &next, cx).await,
            Err(answer) => Ok(answer.into()),
        }
    }

    fn confirm_tool(tool: &str, price: &Price) -> Tool {
        let schema = json!({
            "type": "object",
            "properties": {"payment_id": {"type": "string", "description": "The paymentId answered by the paid tool."}},
            "required": ["payment_id"],
        });
        let mut confirm = Tool::new(
            confirm_tool_name(tool),
            format!("Confirm the payment of {} for `{tool}` and run it with the arguments it was called with.", price.display()),
            Arc::new(schema.as_object().cloned().unwrap_or_default()),
        );
        confirm.meta = None;
        confirm
    }
}

impl<S: ServerHandler> ServerHandler for Paid<S> {
    fn get_info(&self) -> ServerConfig {
        let mut info = self.inner.get_info();
        let tools = info
            .capabilities
            .tools
            .get_or_insert_with(ToolsCapability::default);
        if self.walleot.mode == Mode::DynamicTools {
            tools.list_changed = Some(true);
        }
        info
    }

    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        let caller = self.caller(&context);
        let mut listed = self.inner.list_tools(request, context).await?;
        let mut confirms = Vec::new();
        for tool in &mut listed.tools {
            let Some(price) = self.walleot.prices.get(tool.name.as_ref()) else {
                continue;
            };
            tool.meta
                .get_or_insert_with(MetaObject::new)
                .insert("price".into(), price.meta());
            if self.walleot.mode == Mode::Resubmit {
                let mut schema = (*tool.input_schema).clone();
                let properties = schema.entry("properties").or_insert_with(|| json!({}));
                if let Some(properties) = properties.as_object_mut() {
                    properties.insert(
                        "payment_id".into(),
                        json!({"type": "string", "description": "The paymentId from the first call, once paid."}),
                    );
                }
                tool.input_schema = Arc::new(schema);
            }
            if self.lists_confirm(tool.name.as_ref(), caller.owner.as_deref()) {
                confirms.push(Self::confirm_tool(tool.name.as_ref(), price));
            }
        }
        listed.tools.extend(confirms);
        Ok(listed)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if let Some(tool) = self.confirmed_tool(name) {
            return Some(Self::confirm_tool(&tool, &self.walleot.prices[&tool]));
        }
        self.inner.get_tool(name)
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let name = request.name.to_string();
        if let Some(tool) = self.confirmed_tool(&name) {
            return self.confirm(&tool, request, context).await;
        }
        match self.walleot.prices.get(&name).cloned() {
            Some(price) => self.priced_call(&name, price, request, context).await,
            None => self.inner.call_tool(request, context).await,
        }
    }

    async fn ping(&self, context: RequestContext<RoleServer>) -> Result<(), McpError> {
        self.inner.ping(context).await
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        let mut result = self.inner.initialize(request, context).await?;
        let tools = result
            .capabilities
            .tools
            .get_or_insert_with(ToolsCapability::default);
        if self.walleot.mode == Mode::DynamicTools {
            tools.list_changed = Some(true);
        }
        Ok(result)
    }

    fn negotiate_initialize(
        &self,
        request: &InitializeRequestParams,
    ) -> Result<InitializeResult, McpError> {
        self.inner.negotiate_initialize(request)
    }

    fn supported_protocol_versions(&self) -> Cow<'static, [ProtocolVersion]> {
        self.inner.supported_protocol_versions()
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, McpError> {
        self.inner.discover(context).await
    }

    async fn complete(
        &self,
        request: CompleteRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CompleteResult, McpError> {
        self.inner.complete(request, context).await
    }

    #[allow(deprecated)]
    async fn set_level(
        &self,
        request: SetLevelRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.inner.set_level(request, context).await
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        self.inner.get_prompt(request, context).await
    }

    async fn list_prompts(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        self.inner.list_prompts(request, context).await
    }

    async fn list_resources(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        self.inner.list_resources(request, context).await
    }

    async fn list_resource_templates(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourceTemplatesResult, McpError> {
        self.inner.list_resource_templates(request, context).await
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        self.inner.read_resource(request, context).await
    }

    fn accepted_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        if self.walleot.mode == Mode::DynamicTools {
            return Some(requested.supported_by(&self.get_info().capabilities));
        }
        self.inner.accepted_subscription_filter(requested)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        if self.walleot.mode != Mode::DynamicTools {
            return self.inner.listen(context).await;
        }
        let mut changes = self.walleot.changes.subscribe();
        loop {
            tokio::select! {
                changed = changes.recv() => match changed {
                    Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        if context.sink().notify_tool_list_changed().await.is_err() {
                            return Ok(());
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return Ok(()),
                },
                _ = context.cancelled() => return Ok(()),
            }
        }
    }

    #[allow(deprecated)]
    async fn subscribe(
        &self,
        request: SubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.inner.subscribe(request, context).await
    }

    #[allow(deprecated)]
    async fn unsubscribe(
        &self,
        request: UnsubscribeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.inner.unsubscribe(request, context).await
    }

    async fn on_custom_request(
        &self,
        request: CustomRequest,
        context: RequestContext<RoleServer>,
    ) -> Result<CustomResult, McpError> {
        self.inner.on_custom_request(request, context).await
    }

    async fn on_cancelled(
        &self,
        notification: CancelledNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        self.inner.on_cancelled(notification, context).await
    }

    async fn on_progress(
        &self,
        notification: ProgressNotificationParam,
        context: NotificationContext<RoleServer>,
    ) {
        self.inner.on_progress(notification, context).await
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        self.inner.on_initialized(context).await
    }

    async fn on_roots_list_changed(&self, context: NotificationContext<RoleServer>) {
        self.inner.on_roots_list_changed(context).await
    }

    async fn on_custom_notification(
        &self,
        notification: CustomNotification,
        context: NotificationContext<RoleServer>,
    ) {
        self.inner
            .on_custom_notification(notification, context)
            .await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        self.inner.get_task(request, context).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.inner.update_task(request, context).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        self.inner.cancel_task(request, context).await
    }

    async fn list_skills(
        &self,
        request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListSkillsResult, McpError> {
        self.inner.list_skills(request, context).await
    }

    async fn get_skill(
        &self,
        request: GetSkillRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetSkillResult, McpError> {
        self.inner.get_skill(request, context).await
    }

    async fn read_resource_directory(
        &self,
        request: ReadResourceDirectoryRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceDirectoryResult, McpError> {
        self.inner.read_resource_directory(request, context).await
    }
}
