//! [`Paid`]: an rmcp server with prices on some of its tools.
//!
//! The wrapper is itself a [`ServerHandler`]: it adds each price to the tool's `_meta`
//! in tools/list, adds the confirm tools or `payment_id` arguments its mode needs, and
//! stands in front of every tools/call of a priced tool. Everything else goes to the
//! wrapped server unchanged.
//!
//! A priced call checks its arguments against the tool's input schema, opens a payment
//! (`payment`), and answers as its flow does (`crate::flows`); a paid payment is run and
//! settled once (`payment`), and waits for the payer are long polls (`wait`).

mod payment;
pub use payment::RECEIPT_META;
mod wait;

use crate::answers::invalid_arguments;
use crate::flows::Flow;
use crate::mode::Mode;
use crate::price::Price;
use crate::Walleot;
use rmcp::model::*;
use rmcp::service::{NotificationContext, RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{json, Map, Value};
use std::borrow::Cow;
use std::sync::Arc;

/// A result paid under a mandate says so in its `_meta.payment`: the payment id (kept
/// for a repeated confirmation), the mandate and, for the tool's own result, the amount
/// charged (for an "up to" price, what the result names). An error (the tool failed, or
/// the capture is still to come) names no amount: nothing is charged for it, or not yet.
fn paid_under_mandate(
    answer: CallToolResponse,
    pending: &crate::store::PendingPayment,
    price: &Price,
    mandate: Option<String>,
) -> CallToolResponse {
    let CallToolResponse::Complete(mut result) = answer else {
        return answer;
    };
    let mut payment = json!({"paymentId": pending.payment_id, "mandateId": mandate});
    if result.is_error != Some(true) {
        let charged = Price {
            minor: crate::price::charge_for(
                price,
                &serde_json::to_value(&result).unwrap_or_default(),
            ),
            up_to: false,
            ..price.clone()
        };
        payment["amount"] = charged.major_number();
        payment["amountMinor"] = json!(charged.minor);
        payment["currency"] = json!(price.currency.code().to_ascii_uppercase());
    }
    let mut meta = result.meta.take().unwrap_or_default();
    meta.0.insert("payment".into(), payment);
    result.meta = Some(meta);
    CallToolResponse::Complete(result)
}

/// Name of the companion tool that confirms a payment for `tool`.
pub fn confirm_tool_name(tool: &str) -> String {
    format!("confirm_{tool}_payment")
}

/// A server whose priced tools are paid through Walleot.
pub struct Paid<S> {
    pub(crate) inner: S,
    pub(crate) walleot: Arc<Walleot>,
    /// Stands for the MCP session where the transport gives no session id (stdio, where
    /// one handler serves one connection).
    connection: String,
}

/// Who is calling.
pub(crate) struct Caller {
    /// The authenticated subject, where the server names one: payments are bound to it.
    pub(crate) subject: Option<String>,
    /// What the per-caller cap and the listed confirm tools go by: the subject, the MCP
    /// session, the stdio connection, or over HTTP without a session the `Authorization`
    /// credential (its digest). `None` for a stateless request without a credential,
    /// which has nothing to be told apart by.
    pub(crate) owner: Option<String>,
    /// The customer reference a mandate may cover: the subject, or a stdio server's
    /// installation reference; none over HTTP without a subject.
    pub(crate) customer: Option<String>,
}

pub(crate) use crate::store::now_unix;

/// The owner a credential stands for: its digest, so that a store never keeps it.
fn credential_owner(credential: &[u8]) -> String {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(credential);
    format!("credential:{}", hex::encode(&digest[..16]))
}

pub(crate) fn is_newer(cx: &RequestContext<RoleServer>) -> bool {
    cx.protocol_version()
        .is_some_and(|v| v >= ProtocolVersion::V_2026_07_28)
}

/// The client's declared elicitation capability, if any.
pub(crate) fn client_elicitation(cx: &RequestContext<RoleServer>) -> Option<ElicitationCapability> {
    cx.client_capabilities().and_then(|c| c.elicitation)
}

/// Stateless HTTP: requests arrive without a session, and the server cannot send
/// requests (such as elicitations) back to the client.
pub(crate) fn stateless(cx: &RequestContext<RoleServer>) -> bool {
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

    /// Who is calling. Never anything the client can choose in `_meta`.
    pub(crate) fn caller(&self, cx: &RequestContext<RoleServer>) -> Caller {
        let subject = self
            .walleot
            .identify
            .as_ref()
            .and_then(|identify| identify(cx));
        let owner = match &subject {
            Some(subject) => Some(format!("subject:{subject}")),
            None => match cx.extensions.get::<http::request::Parts>() {
                // HTTP: the session, where there is one; else (stateless, and every
                // MCP 2026-07-28 request) the credential the client presents.
                Some(parts) => parts
                    .headers
                    .get("mcp-session-id")
                    .and_then(|v| v.to_str().ok())
                    .map(|id| format!("mcp-session:{id}"))
                    .or_else(|| {
                        parts
                            .headers
                            .get(http::header::AUTHORIZATION)
                            .map(|credential| credential_owner(credential.as_bytes()))
                    }),
                // stdio: one handler serves one connection.
                None => Some(format!("connection:{}", self.connection)),
            },
        };
        let customer = match (&subject, cx.extensions.get::<http::request::Parts>()) {
            (Some(subject), _) => Some(crate::customer::of_subject(subject)),
            (None, None) => self.walleot.customer.clone(),
            (None, Some(_)) => None,
        };
        Caller {
            subject,
            owner,
            customer,
        }
    }

    /// Whether the confirm tool of `tool` is listed for `owner`: always, except in
    /// RESUBMIT (no confirm tools) and DYNAMIC_TOOLS (only while a payment of the caller
    /// is open; an anonymous stateless caller, who cannot be told apart, always sees it).
    fn lists_confirm(&self, tool: &str, owner: Option<&str>) -> bool {
        match (self.walleot.mode, owner) {
            (Mode::Resubmit, _) => false,
            (Mode::DynamicTools, owner) => self.confirm_tool_open(tool, owner),
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
    /// for; a tool that publishes no schema is not checked. A refusal is a tool error,
    /// not a protocol error, as MCP asks, so that the model can correct its call.
    fn validate(&self, tool: &str, arguments: &Map<String, Value>) -> Result<(), CallToolResult> {
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
        Err(invalid_arguments(tool, &problems.join("; ")))
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
        if self.walleot.mode == Mode::Resubmit {
            if let Some(payment_id) = arguments.remove("payment_id") {
                return self
                    .resubmitted(tool, &price, payment_id, arguments, &caller, cx)
                    .await;
            }
        }
        let flow = Flow::resolve(self.walleot.mode, &cx);
        let elicits = matches!(self.walleot.mode, Mode::Elicitation | Mode::Auto);
        if let (true, Some(state)) = (elicits && is_newer(&cx), request.request_state) {
            let responses = request.input_responses.unwrap_or_default();
            return self
                .input_returned(tool, &price, arguments, &caller, &state, responses, cx)
                .await;
        }
        if let Err(refused) = self.validate(tool, &arguments) {
            return Ok(refused.into());
        }
        let (pending, covered) = match self.start_payment(tool, arguments, &price, &caller).await {
            Ok(p) => p,
            Err(refused) => return Ok(refused.into()),
        };
        if let Some(session) = covered {
            // Paid at creation under the payer's mandate: it runs now, in this call.
            let next = match flow {
                Flow::Resubmit => Flow::Resubmit,
                _ => Flow::TwoStep,
            }
            .next_step(tool);
            let mandate = session.mandate_id.clone();
            let answer = self
                .run_paid(&pending, &price, &next, Some(session), cx)
                .await?;
            return Ok(paid_under_mandate(answer, &pending, &price, mandate));
        }
        self.start_flow(flow, pending, price, &caller, cx).await
    }

    // What the wrapper adds to the `ServerHandler` methods it does not pass through.

    fn paid_info(&self) -> ServerConfig {
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

    async fn paid_initialize(
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

    async fn paid_list_tools(
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

    fn paid_get_tool(&self, name: &str) -> Option<Tool> {
        if let Some(tool) = self.confirmed_tool(name) {
            return Some(Self::confirm_tool(&tool, &self.walleot.prices[&tool]));
        }
        self.inner.get_tool(name)
    }

    async fn paid_call_tool(
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

    fn paid_subscription_filter(
        &self,
        requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        if self.walleot.mode == Mode::DynamicTools {
            return Some(requested.supported_by(&self.paid_info().capabilities));
        }
        self.inner.accepted_subscription_filter(requested)
    }

    async fn paid_listen(&self, context: SubscriptionContext) -> Result<(), McpError> {
        if self.walleot.mode != Mode::DynamicTools {
            return self.inner.listen(context).await;
        }
        self.listen_for_tool_changes(context).await
    }
}

/// Writes the whole `ServerHandler` impl of [`Paid`] from one list of the trait's methods,
/// each going either to the wrapped server (`inner`) or to the wrapper's own method of
/// the name given, and keeps the list's names in [`HANDLED`]. A test holds that list
/// against rmcp's trait, so a method rmcp adds later fails the build's tests instead of
/// silently answering with the trait's default.
macro_rules! server_handler {
    (
        async { $( $(#[$am:meta])* $aname:ident($($aarg:ident: $aty:ty),*) -> $aret:ty => $atarget:ident; )* }
        sync { $( $sname:ident($($sarg:ident: $sty:ty),*) -> $sret:ty => $starget:ident; )* }
    ) => {
        impl<S: ServerHandler> ServerHandler for Paid<S> {
            $(
                $(#[$am])*
                async fn $aname(&self, $($aarg: $aty),*) -> $aret {
                    server_handler!(@call self, $atarget, $aname, ($($aarg),*)).await
                }
            )*
            $(
                fn $sname(&self, $($sarg: $sty),*) -> $sret {
                    server_handler!(@call self, $starget, $sname, ($($sarg),*))
                }
            )*
        }

        /// Every `ServerHandler` method the wrapper implements.
        #[cfg(test)]
        const HANDLED: &[&str] = &[$(stringify!($aname),)* $(stringify!($sname),)*];
    };
    (@call $self:ident, inner, $name:ident, ($($arg:ident),*)) => { $self.inner.$name($($arg),*) };
    (@call $self:ident, $own:ident, $name:ident, ($($arg:ident),*)) => { $self.$own($($arg),*) };
}

server_handler! {
    async {
        initialize(request: InitializeRequestParams, context: RequestContext<RoleServer>) -> Result<InitializeResult, McpError> => paid_initialize;
        list_tools(request: Option<PaginatedRequestParams>, context: RequestContext<RoleServer>) -> Result<ListToolsResult, McpError> => paid_list_tools;
        call_tool(request: CallToolRequestParams, context: RequestContext<RoleServer>) -> Result<CallToolResponse, McpError> => paid_call_tool;
        listen(context: SubscriptionContext) -> Result<(), McpError> => paid_listen;
        ping(context: RequestContext<RoleServer>) -> Result<(), McpError> => inner;
        discover(context: RequestContext<RoleServer>) -> Result<DiscoverResult, McpError> => inner;
        complete(request: CompleteRequestParams, context: RequestContext<RoleServer>) -> Result<CompleteResult, McpError> => inner;
        #[allow(deprecated)]
        set_level(request: SetLevelRequestParams, context: RequestContext<RoleServer>) -> Result<(), McpError> => inner;
        get_prompt(request: GetPromptRequestParams, context: RequestContext<RoleServer>) -> Result<GetPromptResponse, McpError> => inner;
        list_prompts(request: Option<PaginatedRequestParams>, context: RequestContext<RoleServer>) -> Result<ListPromptsResult, McpError> => inner;
        list_resources(request: Option<PaginatedRequestParams>, context: RequestContext<RoleServer>) -> Result<ListResourcesResult, McpError> => inner;
        list_resource_templates(request: Option<PaginatedRequestParams>, context: RequestContext<RoleServer>) -> Result<ListResourceTemplatesResult, McpError> => inner;
        read_resource(request: ReadResourceRequestParams, context: RequestContext<RoleServer>) -> Result<ReadResourceResponse, McpError> => inner;
        #[allow(deprecated)]
        subscribe(request: SubscribeRequestParams, context: RequestContext<RoleServer>) -> Result<(), McpError> => inner;
        #[allow(deprecated)]
        unsubscribe(request: UnsubscribeRequestParams, context: RequestContext<RoleServer>) -> Result<(), McpError> => inner;
        on_custom_request(request: CustomRequest, context: RequestContext<RoleServer>) -> Result<CustomResult, McpError> => inner;
        on_cancelled(notification: CancelledNotificationParam, context: NotificationContext<RoleServer>) -> () => inner;
        on_progress(notification: ProgressNotificationParam, context: NotificationContext<RoleServer>) -> () => inner;
        on_initialized(context: NotificationContext<RoleServer>) -> () => inner;
        on_roots_list_changed(context: NotificationContext<RoleServer>) -> () => inner;
        on_custom_notification(notification: CustomNotification, context: NotificationContext<RoleServer>) -> () => inner;
        get_task(request: GetTaskParams, context: RequestContext<RoleServer>) -> Result<GetTaskResult, McpError> => inner;
        update_task(request: UpdateTaskParams, context: RequestContext<RoleServer>) -> Result<(), McpError> => inner;
        cancel_task(request: CancelTaskParams, context: RequestContext<RoleServer>) -> Result<(), McpError> => inner;
        list_skills(request: Option<PaginatedRequestParams>, context: RequestContext<RoleServer>) -> Result<ListSkillsResult, McpError> => inner;
        get_skill(request: GetSkillRequestParams, context: RequestContext<RoleServer>) -> Result<GetSkillResult, McpError> => inner;
        read_resource_directory(request: ReadResourceDirectoryRequestParams, context: RequestContext<RoleServer>) -> Result<ReadResourceDirectoryResult, McpError> => inner;
    }
    sync {
        get_info() -> ServerConfig => paid_info;
        get_tool(name: &str) -> Option<Tool> => paid_get_tool;
        accepted_subscription_filter(requested: &SubscriptionFilter) -> Option<SubscriptionFilter> => paid_subscription_filter;
        negotiate_initialize(request: &InitializeRequestParams) -> Result<InitializeResult, McpError> => inner;
        supported_protocol_versions() -> Cow<'static, [ProtocolVersion]> => inner;
    }
}

#[cfg(test)]
mod tests {
    use super::HANDLED;
    use std::collections::BTreeSet;

    /// The methods of rmcp's `ServerHandler`, read from the source of the rmcp this
    /// crate is built with (its `server_handler_methods!` body).
    fn rmcp_server_handler_methods() -> BTreeSet<String> {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let metadata = std::process::Command::new(cargo)
            .args(["metadata", "--format-version", "1", "--locked"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .output()
            .expect("cargo metadata");
        let metadata: serde_json::Value =
            serde_json::from_slice(&metadata.stdout).expect("cargo metadata answers JSON");
        let manifest = metadata["packages"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == "rmcp")
            .and_then(|p| p["manifest_path"].as_str())
            .expect("rmcp among the dependencies")
            .to_string();
        let source = std::path::Path::new(&manifest)
            .parent()
            .unwrap()
            .join("src/handler/server.rs");
        let source = std::fs::read_to_string(&source).expect("rmcp's handler source");
        let start = source
            .find("macro_rules! server_handler_methods")
            .expect("rmcp defines its ServerHandler methods in one macro");
        let body = &source[start..];
        let end = body
            .find("\nmacro_rules!")
            .or_else(|| body.find("\npub trait"))
            .unwrap_or(body.len());
        let mut methods = BTreeSet::new();
        for line in body[..end].lines() {
            let line = line.trim_start();
            if let Some(rest) = line
                .strip_prefix("fn ")
                .or_else(|| line.strip_prefix("async fn "))
            {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                methods.insert(name);
            }
        }
        methods
    }

    #[test]
    fn every_server_handler_method_of_rmcp_is_handled() {
        let rmcp = rmcp_server_handler_methods();
        assert!(rmcp.len() > 20, "read too few methods: {rmcp:?}");
        let handled: BTreeSet<String> = HANDLED.iter().map(|s| s.to_string()).collect();
        let missing: Vec<_> = rmcp.difference(&handled).collect();
        assert!(
            missing.is_empty(),
            "ServerHandler methods not passed through: {missing:?}"
        );
        let unknown: Vec<_> = handled.difference(&rmcp).collect();
        assert!(unknown.is_empty(), "not rmcp's methods: {unknown:?}");
    }
}
