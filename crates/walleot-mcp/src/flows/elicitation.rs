//! ELICITATION on MCP 2025-11-25 sessions: the server asks the client to show the
//! payment link (URL elicitation where declared, else a form), waits for the payer, and
//! runs the tool in the same call.

use super::Flow;
use crate::answers::{payment_required, refusal};
use crate::paid::{client_elicitation, stateless, Paid};
use crate::price::Price;
use crate::store::PendingPayment;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{json, Value};
use std::time::Duration;

impl<S: ServerHandler> Paid<S> {
    /// What the client is asked to show: the payment link (URL elicitation where it
    /// declares that mode), else a form whose `paid` box the payer ticks once done.
    pub(crate) fn elicitation_request(
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

    /// The payer declined: the session is cancelled, so nothing will be paid.
    pub(crate) async fn declined(&self, pending: &PendingPayment) -> CallToolResult {
        let _ = self
            .walleot
            .client
            .cancel_session(&pending.session_id)
            .await;
        refusal("the payer declined the payment; nothing was charged")
    }

    /// Asks the client to show the payment link (URL elicitation where declared, else a
    /// form) and waits for the payer; then runs the tool in the same call. A timeout, a
    /// dismissed request or a payment still open gets the two-step answer.
    pub(crate) async fn elicitation_call(
        &self,
        pending: PendingPayment,
        price: Price,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = Flow::Elicitation.next_step(&pending.tool);
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
        let seen = match self
            .await_payment(&pending, &price, &next, &cx, wait, None)
            .await
        {
            Ok(seen) => seen,
            Err(answer) => return Ok(answer.into()),
        };
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
        self.run_paid(&pending, &price, &next, Some(seen), cx).await
    }
}
