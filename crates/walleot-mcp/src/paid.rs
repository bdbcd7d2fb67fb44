//! [`Paid`]: an rmcp server with prices on some of its tools.
//!
//! The wrapper is itself a [`ServerHandler`]: it adds each price to the tool's `_meta`
//! in tools/list, adds the confirm tools or `payment_id` arguments its mode needs, and
//! stands in front of every tools/call of a priced tool. Everything else goes to the
//! wrapped server unchanged.

use crate::mode::Mode;
use crate::price::Price;
use crate::store::{arguments_hash, Claim, PendingPayment};
use crate::Walleot;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;
use walleot_api::{CaptureMethod, CaptureStatus, CreateSessionRequest, SessionStatus};

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
        let newer = cx
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        if newer {
            let _ = self.walleot.changes.send(());
        } else {
            let _ = cx.peer.notify_tool_list_changed().await;
        }
    }

    /// The mode for this client: AUTO picks elicitation where the client declares it (a
    /// capability that is missing or null counts as absent), else two steps.
    fn mode_for(&self, cx: &RequestContext<RoleServer>) -> Mode {
        match self.walleot.mode {
            Mode::Auto if client_elicitation(cx).is_some() => Mode::Elicitation,
            Mode::Auto => Mode::TwoStep,
            other => other,
        }
    }

    /// Opens (or closes) a payment of `tool`; true when its confirm tool thereby
    /// appears (or disappears).
    fn open_confirm(&self, caller: &str, tool: &str, payment_id: &str, open: bool) -> bool {
        let key = (caller.to_string(), tool.to_string());
        let mut all = self.walleot.open.lock().unwrap_or_else(|e| e.into_inner());
        let before = all.get(&key).is_some_and(|ids| !ids.is_empty());
        let ids = all.entry(key.clone()).or_default();
        if open {
            ids.insert(payment_id.to_string());
        } else {
            ids.remove(payment_id);
        }
        let after = !ids.is_empty();
        if !after {
            all.remove(&key);
        }
        before != after
    }

    fn is_open(&self, caller: &str, tool: &str) -> bool {
        let all = self.walleot.open.lock().unwrap_or_else(|e| e.into_inner());
        all.contains_key(&(caller.to_string(), tool.to_string()))
    }

    /// Who is calling: the authenticated subject where the server has one, else the MCP
    /// session. Never anything the client can choose in `_meta`.
    fn caller(&self, cx: &RequestContext<RoleServer>) -> String {
        if let Some(identify) = &self.walleot.identify {
            if let Some(subject) = identify(cx) {
                return format!("subject:{subject}");
            }
        }
        match cx.extensions.get::<http::request::Parts>() {
            // HTTP with a session: the session.
            Some(parts) => match parts
                .headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
            {
                Some(id) => format!("mcp-session:{id}"),
                // Stateless HTTP has no session to bind to: without an authenticated
                // subject, whoever holds the (unguessable) payment id may confirm it.
                None => "stateless-http".to_string(),
            },
            // stdio: one handler serves one connection.
            None => format!("connection:{}", self.connection),
        }
    }

    /// Stateless HTTP: requests arrive without a session, and the server cannot send
    /// requests (such as elicitations) back to the client.
    fn stateless(cx: &RequestContext<RoleServer>) -> bool {
        cx.extensions
            .get::<http::request::Parts>()
            .is_some_and(|parts| !parts.headers.contains_key("mcp-session-id"))
    }

    /// Whether the confirm tool of `tool` is offered now: always, except in RESUBMIT
    /// (no confirm tools) and DYNAMIC_TOOLS (only while a payment is open).
    /// `caller` is `None` where no request is at hand: then any caller counts.
    fn offers_confirm(&self, tool: &str, caller: Option<&str>) -> bool {
        match (self.walleot.mode, caller) {
            (Mode::Resubmit, _) => false,
            (Mode::DynamicTools, Some(caller)) => self.is_open(caller, tool),
            _ => true,
        }
    }

    /// The priced tool a confirm tool name stands for.
    fn confirmed_tool(&self, name: &str, caller: Option<&str>) -> Option<String> {
        let tool = name.strip_prefix("confirm_")?.strip_suffix("_payment")?;
        (self.walleot.prices.contains_key(tool) && self.offers_confirm(tool, caller))
            .then(|| tool.to_string())
    }

    async fn start_payment(
        &self,
        tool: &str,
        arguments: Map<String, Value>,
        price: &Price,
        caller: String,
    ) -> Result<PendingPayment, CallToolResult> {
        let request = CreateSessionRequest {
            amount: price.minor,
            currency: price.currency.code().to_string(),
            description: Some(format!("Tool call: {tool}")),
            capture_method: Some(CaptureMethod::Manual),
            ..Default::default()
        };
        let session = self
            .walleot
            .client
            .create_session(&request)
            .await
            .map_err(|e| service_failure(&e.to_string()))?;
        let pending = PendingPayment {
            payment_id: session.session_id,
            payment_url: session.url,
            tool: tool.to_string(),
            arguments_hash: arguments_hash(&arguments),
            arguments,
            amount_minor: price.minor,
            currency: price.currency.code().to_string(),
            caller,
        };
        self.walleot
            .store
            .put(pending.clone())
            .await
            .map_err(|e| service_failure(&e.to_string()))?;
        Ok(pending)
    }

    /// Runs the tool of a paid payment once: checks the payment with the service,
    /// claims it, runs the tool, captures the held funds after success or releases them
    /// after failure, and keeps the result for a repeated confirmation.
    async fn run_paid(
        &self,
        pending: &PendingPayment,
        price: &Price,
        next_step: &str,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let store = &self.walleot.store;
        if let Ok(Some((_, crate::store::PaymentState::Done { result, .. }))) =
            store.get(&pending.payment_id).await
        {
            return Ok(cached(result).into());
        }
        let session = match self.walleot.client.get_session(&pending.payment_id).await {
            Ok(s) => s,
            Err(e) => return Ok(service_failure(&e.to_string()).into()),
        };
        if session.amount != pending.amount_minor || session.currency.code() != pending.currency {
            return Ok(refusal("the payment does not match this tool's price").into());
        }
        match (session.status, session.capture_status) {
            (SessionStatus::Paid, None | Some(CaptureStatus::Held) | Some(CaptureStatus::Captured)) => {}
            (SessionStatus::Pending, _) => {
                return Ok(payment_required(pending, price, next_step, "pending", false).into())
            }
            (status, _) => {
                return Ok(refusal(&format!(
                    "the payment is {status}; nothing was charged. Call `{}` again for a new payment link.",
                    pending.tool
                ))
                .into())
            }
        }
        match store.claim(&pending.payment_id).await {
            Ok(Claim::Run) => {}
            Ok(Claim::Done { result, .. }) => return Ok(cached(result).into()),
            Ok(Claim::Running) => {
                return Ok(self.wait_for_result(&pending.payment_id).await.into())
            }
            Ok(Claim::Unknown) => return Ok(unknown_payment().into()),
            Err(e) => return Ok(service_failure(&e.to_string()).into()),
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
        let settled = if succeeded {
            self.walleot
                .client
                .capture_session(&pending.payment_id)
                .await
        } else {
            self.walleot
                .client
                .release_session(&pending.payment_id)
                .await
        };
        if let Err(e) = settled {
            // The hold lapses back to the payer by itself if it is never captured.
            tracing::warn!(payment = %pending.payment_id, error = %e, succeeded, "settling a payment failed");
        }
        let kept = serde_json::to_value(&result).unwrap_or(Value::Null);
        if let Err(e) = store.finish(&pending.payment_id, kept, succeeded).await {
            tracing::warn!(payment = %pending.payment_id, error = %e, "keeping a paid result failed");
        }
        Ok(result.into())
    }

    /// A concurrent confirmation is running the tool: wait for its result.
    async fn wait_for_result(&self, payment_id: &str) -> CallToolResult {
        let deadline = tokio::time::Instant::now() + self.walleot.wait_for_payment;
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some((_, crate::store::PaymentState::Done { result, .. }))) =
                self.walleot.store.get(payment_id).await
            {
                return cached(result);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        refusal("the paid tool is still running; confirm again in a moment to get its result")
    }

    /// A payment the caller may use for `tool`, or the refusal to answer.
    async fn payment_for(
        &self,
        payment_id: Option<&Value>,
        tool: &str,
        caller: &str,
    ) -> Result<PendingPayment, CallToolResult> {
        let Some(payment_id) = payment_id.and_then(Value::as_str) else {
            return Err(refusal("`payment_id` (a string) is required"));
        };
        match self.walleot.store.get(payment_id).await {
            // Another tool's or another caller's payment reads as unknown: nothing about
            // it is revealed.
            Ok(Some((pending, _))) if pending.tool == tool && pending.caller == caller => {
                Ok(pending)
            }
            Ok(_) => Err(unknown_payment()),
            Err(e) => Err(service_failure(&e.to_string())),
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
            let ran = matches!(
                self.walleot.store.get(&pending.payment_id).await,
                Ok(Some((_, crate::store::PaymentState::Done { .. })))
            );
            // The confirm tool goes once no payment of its tool is open any more.
            if ran && self.open_confirm(&caller, tool, &pending.payment_id, false) {
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
        let state = request.request_state.clone();
        let responses = request.input_responses.clone().unwrap_or_default();
        let mut arguments = request.arguments.unwrap_or_default();
        let newer = cx
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        match self.mode_for(&cx) {
            Mode::Elicitation if newer => {
                self.input_required_call(tool, price, arguments, caller, state, responses, cx)
                    .await
            }
            Mode::Resubmit => {
                let payment_id = arguments.remove("payment_id");
                let next = format!(
                    "call `{tool}` again with the same arguments and this payment_id once paid"
                );
                match payment_id {
                    None => match self.start_payment(tool, arguments, &price, caller).await {
                        Ok(pending) => {
                            Ok(
                                payment_required(&pending, &price, &next, "payment_required", true)
                                    .into(),
                            )
                        }
                        Err(failure) => Ok(failure.into()),
                    },
                    Some(id) => {
                        let pending = match self.payment_for(Some(&id), tool, &caller).await {
                            Ok(p) => p,
                            Err(refused) => return Ok(refused.into()),
                        };
                        if pending.arguments_hash != arguments_hash(&arguments) {
                            return Ok(refusal(
                                "this payment was made for other arguments; it cannot pay for this call",
                            )
                            .into());
                        }
                        self.run_paid(&pending, &price, &next, cx).await
                    }
                }
            }
            Mode::TwoStep | Mode::Auto => {
                let next = format!(
                    "call `{}` with this payment_id once paid",
                    confirm_tool_name(tool)
                );
                match self.start_payment(tool, arguments, &price, caller).await {
                    Ok(pending) => {
                        Ok(
                            payment_required(&pending, &price, &next, "payment_required", false)
                                .into(),
                        )
                    }
                    Err(failure) => Ok(failure.into()),
                }
            }
            Mode::DynamicTools => {
                let next = format!(
                    "call `{}` (now in the tool list) with this payment_id once paid",
                    confirm_tool_name(tool)
                );
                let pending = match self.start_payment(tool, arguments, &price, caller).await {
                    Ok(p) => p,
                    Err(failure) => return Ok(failure.into()),
                };
                if self.open_confirm(&pending.caller, tool, &pending.payment_id, true) {
                    self.announce_tool_list_change(&cx).await;
                }
                Ok(payment_required(&pending, &price, &next, "payment_required", false).into())
            }
            Mode::Progress => self.progress_call(tool, price, arguments, caller, cx).await,
            Mode::Elicitation => {
                self.elicitation_call(tool, price, arguments, caller, cx)
                    .await
            }
        }
    }

    /// MCP 2026-07-28 forbids server-to-client requests: the call answers an
    /// `InputRequiredResult` asking the client to show the payment link, with the payment
    /// sealed in the request state; the client's retry carries the state back, and the
    /// tool runs once the payment is made. The seal binds the retry to this payment, tool
    /// and arguments, whichever server instance receives it.
    #[allow(clippy::too_many_arguments)]
    async fn input_required_call(
        &self,
        tool: &str,
        price: Price,
        arguments: Map<String, Value>,
        caller: String,
        state: Option<String>,
        responses: InputResponses,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = format!("call `{tool}` again once paid");
        let Some(state) = state else {
            let pending = match self.start_payment(tool, arguments, &price, caller).await {
                Ok(p) => p,
                Err(failure) => return Ok(failure.into()),
            };
            let message = format!(
                "`{tool}` costs {}. Pay at {}",
                price.display(),
                pending.payment_url
            );
            let url_mode = client_elicitation(&cx).is_some_and(|c| c.url.is_some());
            let request = if url_mode {
                ElicitRequestParams::UrlElicitationParams {
                    meta: None,
                    message,
                    url: pending.payment_url.clone(),
                    elicitation_id: String::new(),
                }
            } else {
                let Ok(schema) = ElicitationSchema::builder().required_bool("paid").build() else {
                    return Ok(payment_required(
                        &pending,
                        &price,
                        &next,
                        "payment_required",
                        false,
                    )
                    .into());
                };
                ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message: format!("{message}, then confirm here."),
                    requested_schema: schema,
                }
            };
            let mut requests = InputRequests::new();
            requests.insert(
                "payment".into(),
                InputRequest::Elicitation(ElicitRequest::new(request)),
            );
            return Ok(InputRequiredResult::new(
                Some(requests),
                Some(self.seal(&pending.payment_id)),
            )
            .into());
        };
        let Some(payment_id) = self.open_seal(&state) else {
            return Ok(refusal("the request state is not valid; call the tool again").into());
        };
        let pending = match self.walleot.store.get(&payment_id).await {
            Ok(Some((pending, _))) if pending.tool == tool => pending,
            Ok(_) => return Ok(unknown_payment().into()),
            Err(e) => return Ok(service_failure(&e.to_string()).into()),
        };
        if pending.arguments_hash != arguments_hash(&arguments) {
            return Ok(refusal(
                "this payment was made for other arguments; it cannot pay for this call",
            )
            .into());
        }
        let accepted = responses
            .get("payment")
            .and_then(|answer| answer.get("action"))
            .and_then(Value::as_str)
            == Some("accept");
        if !accepted {
            let _ = self
                .walleot
                .client
                .cancel_session(&pending.payment_id)
                .await;
            return Ok(refusal("the payment was declined; nothing was charged").into());
        }
        if let Err(answer) = self.await_payment(&pending, &price, &next, &cx).await {
            return Ok(answer.into());
        }
        self.run_paid(&pending, &price, &next, cx).await
    }

    /// Polls the service until the payer has paid, within the wait; the answer to give
    /// otherwise.
    async fn await_payment(
        &self,
        pending: &PendingPayment,
        price: &Price,
        next: &str,
        cx: &RequestContext<RoleServer>,
    ) -> Result<(), CallToolResult> {
        let deadline = tokio::time::Instant::now() + self.walleot.wait_for_payment;
        let token = cx.meta.get_progress_token();
        let mut step = 0.0;
        loop {
            // Long waits report progress so that clients and sessions do not time out.
            if let Some(token) = &token {
                step += 1.0;
                let message = format!(
                    "Waiting for the payment of {} at {}",
                    price.display(),
                    pending.payment_url
                );
                let _ = cx
                    .peer
                    .notify_progress(
                        ProgressNotificationParam::new(token.clone(), step).with_message(message),
                    )
                    .await;
            }
            match self.walleot.client.get_session(&pending.payment_id).await {
                Ok(s) if s.status == SessionStatus::Paid => return Ok(()),
                Ok(s) if s.status != SessionStatus::Pending => {
                    return Err(refusal(&format!(
                        "the payment is {}; nothing was charged",
                        s.status
                    )))
                }
                _ if tokio::time::Instant::now() >= deadline => {
                    return Err(payment_required(pending, price, next, "pending", false))
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(self.walleot.poll_every) => {}
                _ = cx.ct.cancelled() => return Err(payment_required(pending, price, next, "pending", false)),
            }
        }
    }

    /// `payment_id.mac`: the payment, sealed with the state secret.
    fn seal(&self, payment_id: &str) -> String {
        use base64::Engine;
        use hmac::Mac;
        let tag = self.mac(payment_id).finalize().into_bytes();
        format!(
            "{payment_id}.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
        )
    }

    fn open_seal(&self, state: &str) -> Option<String> {
        use base64::Engine;
        use hmac::Mac;
        let (payment_id, tag) = state.rsplit_once('.')?;
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .ok()?;
        // `verify_slice` compares in constant time.
        self.mac(payment_id)
            .verify_slice(&tag)
            .ok()
            .map(|()| payment_id.to_string())
    }

    fn mac(&self, payment_id: &str) -> hmac::Hmac<sha2::Sha256> {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.walleot.state_secret)
            .expect("any key length");
        mac.update(b"walleot-mcp-request-state");
        mac.update(payment_id.as_bytes());
        mac
    }

    /// Asks the client to show the payment link (URL elicitation where declared, else a
    /// form) and waits for the payer; then runs the tool in the same call. A client
    /// without elicitation, a timeout, or a payment still open gets the two-step answer.
    async fn elicitation_call(
        &self,
        tool: &str,
        price: Price,
        arguments: Map<String, Value>,
        caller: String,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = format!(
            "call `{}` with this payment_id once paid",
            confirm_tool_name(tool)
        );
        let pending = match self.start_payment(tool, arguments, &price, caller).await {
            Ok(p) => p,
            Err(failure) => return Ok(failure.into()),
        };
        let fallback = |status: &str| payment_required(&pending, &price, &next, status, false);
        let newer = cx
            .protocol_version()
            .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28);
        let Some(capability) = client_elicitation(&cx).filter(|_| !newer) else {
            return Ok(fallback("payment_required").into());
        };
        if Self::stateless(&cx) {
            // No way to send the elicitation: tell a URL-capable client which URL to open
            // (error -32042 of MCP 2025-11-25); others get two steps.
            if capability.url.is_some() {
                return Err(McpError::new(
                    ErrorCode(-32042),
                    "URL elicitation required: open the payment link, then call the tool again",
                    Some(json!({"elicitations": [{
                        "mode": "url",
                        "elicitationId": pending.payment_id,
                        "url": pending.payment_url,
                        "message": format!("`{tool}` costs {}", price.display()),
                    }]})),
                ));
            }
            return Ok(fallback("payment_required").into());
        }
        let message = format!(
            "`{tool}` costs {}. Pay at {}",
            price.display(),
            pending.payment_url
        );
        let url_mode = capability.url.is_some();
        let request = if url_mode {
            ElicitRequestParams::UrlElicitationParams {
                meta: None,
                message,
                url: pending.payment_url.clone(),
                elicitation_id: pending.payment_id.clone(),
            }
        } else {
            let schema = match ElicitationSchema::builder().required_bool("paid").build() {
                Ok(schema) => schema,
                Err(_) => return Ok(fallback("payment_required").into()),
            };
            ElicitRequestParams::FormElicitationParams {
                meta: None,
                message: format!("{message}, then confirm here."),
                requested_schema: schema,
            }
        };
        let answer = cx
            .peer
            .create_elicitation_with_timeout(request, Some(self.walleot.wait_for_payment))
            .await;
        match answer {
            Ok(result) if result.action == ElicitationAction::Accept => {}
            Ok(_) => {
                // Declined or cancelled: nothing was paid, and nothing will be.
                let _ = self
                    .walleot
                    .client
                    .cancel_session(&pending.payment_id)
                    .await;
                return Ok(refusal("the payment was declined; nothing was charged").into());
            }
            Err(_) => return Ok(fallback("payment_required").into()),
        }
        // The payer says done: give the service a moment to record the payment.
        if let Err(answer) = self.await_payment(&pending, &price, &next, &cx).await {
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

    /// Streams the payment link in progress notifications while polling for the payer,
    /// then runs the tool in the same call. Without a progress token, or when the wait
    /// ends, the answer names the confirm tool instead, so that nothing is lost.
    async fn progress_call(
        &self,
        tool: &str,
        price: Price,
        arguments: Map<String, Value>,
        caller: String,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = format!(
            "call `{}` with this payment_id once paid",
            confirm_tool_name(tool)
        );
        let pending = match self.start_payment(tool, arguments, &price, caller).await {
            Ok(p) => p,
            Err(failure) => return Ok(failure.into()),
        };
        let Some(token) = cx.meta.get_progress_token() else {
            return Ok(payment_required(&pending, &price, &next, "payment_required", false).into());
        };
        let deadline = tokio::time::Instant::now() + self.walleot.wait_for_payment;
        let mut step = 0.0;
        let message = format!(
            "Payment of {} required: open {}",
            price.display(),
            pending.payment_url
        );
        while tokio::time::Instant::now() < deadline {
            step += 1.0;
            let progress =
                ProgressNotificationParam::new(token.clone(), step).with_message(message.clone());
            if cx.peer.notify_progress(progress).await.is_err() {
                break;
            }
            match self.walleot.client.get_session(&pending.payment_id).await {
                Ok(s) if s.status == SessionStatus::Paid => {
                    return self.run_paid(&pending, &price, &next, cx).await
                }
                Ok(s) if s.status != SessionStatus::Pending => {
                    return Ok(refusal(&format!(
                        "the payment is {}; nothing was charged",
                        s.status
                    ))
                    .into())
                }
                _ => {}
            }
            tokio::select! {
                _ = tokio::time::sleep(self.walleot.poll_every) => {}
                _ = cx.ct.cancelled() => break,
            }
        }
        Ok(payment_required(&pending, &price, &next, "payment_required", false).into())
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

/// The client's declared elicitation capability, if any.
fn client_elicitation(cx: &RequestContext<RoleServer>) -> Option<ElicitationCapability> {
    cx.client_capabilities().and_then(|c| c.elicitation)
}

fn text_result(text: String, structured: Value, is_error: bool) -> CallToolResult {
    let mut result = if is_error {
        CallToolResult::error(vec![ContentBlock::text(text)])
    } else {
        CallToolResult::success(vec![ContentBlock::text(text)])
    };
    result.structured_content = Some(structured);
    result
}

/// The machine-readable answer that asks for payment.
fn payment_required(
    p: &PendingPayment,
    price: &Price,
    next_step: &str,
    status: &str,
    is_error: bool,
) -> CallToolResult {
    let structured = json!({
        "status": status,
        "paymentId": p.payment_id,
        "paymentUrl": p.payment_url,
        "amount": price.major_text(),
        "amountMinor": price.minor,
        "currency": price.currency.code().to_ascii_uppercase(),
        "tool": p.tool,
        "nextStep": next_step,
    });
    let text = if status == "pending" {
        format!(
            "The payment of {} is not completed yet. Open {} to pay, then {next_step}.",
            price.display(),
            p.payment_url
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
    text_result(text, structured, is_error)
}

fn refusal(message: &str) -> CallToolResult {
    text_result(
        message.to_string(),
        json!({"status": "refused", "message": message}),
        true,
    )
}

fn unknown_payment() -> CallToolResult {
    refusal("unknown payment_id for this tool and caller")
}

fn service_failure(detail: &str) -> CallToolResult {
    let message = format!(
        "the payment service could not be reached ({detail}); nothing was charged, try again"
    );
    text_result(
        message.clone(),
        json!({"status": "error", "message": message}),
        true,
    )
}

fn cached(result: Value) -> CallToolResult {
    serde_json::from_value(result).unwrap_or_else(|_| refusal("the kept result could not be read"))
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
            if self.offers_confirm(tool.name.as_ref(), Some(&caller)) {
                confirms.push(Self::confirm_tool(tool.name.as_ref(), price));
            }
        }
        listed.tools.extend(confirms);
        Ok(listed)
    }

    fn get_tool(&self, name: &str) -> Option<Tool> {
        if let Some(tool) = self.confirmed_tool(name, None) {
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
        if let Some(tool) = self.confirmed_tool(&name, Some(&self.caller(&context))) {
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
