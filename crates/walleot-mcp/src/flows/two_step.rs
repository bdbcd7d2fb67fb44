//! TWO_STEP: the priced tool answers with the link and payment id; the companion tool
//! `confirm_<tool>_payment(payment_id)` runs the call once paid. The confirm tool also
//! ends the other flows that fall back to two steps.

use super::Flow;
use crate::mode::Mode;
use crate::paid::{confirm_tool_name, Paid};
use crate::price::Price;
use crate::store::PaymentState;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::json;
use std::sync::Arc;

impl<S: ServerHandler> Paid<S> {
    /// `confirm_<tool>_payment(payment_id)`: runs the paid call once.
    pub(crate) async fn confirm(
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
        let next = Flow::TwoStep.next_step(tool);
        let announce = cx.clone();
        let answer = self.run_paid(&pending, &price, &next, None, cx).await;
        if self.walleot.mode == Mode::DynamicTools {
            // The confirm tool goes once its result is handed out or the payment ended
            // unpaid; a confirmation is still accepted after that.
            let delivered = matches!(
                self.walleot.store.get(&pending.payment_id).await,
                Ok(Some((_, PaymentState::Done { .. })))
            );
            let ended = matches!(&answer, Ok(CallToolResponse::Complete(r))
                if r.structured_content.as_ref().and_then(|s| s.get("status")) == Some(&json!("refused")));
            if delivered || ended {
                self.close_confirm_tool(&pending, &announce).await;
            }
        }
        answer
    }

    /// The companion tool as tools/list shows it.
    pub(crate) fn confirm_tool(tool: &str, price: &Price) -> Tool {
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
