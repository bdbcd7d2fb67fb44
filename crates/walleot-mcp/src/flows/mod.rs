//! The ways a priced call gets paid, one file each, behind one [`Flow`] resolved per
//! request from the server's mode and what the client can do.
//!
//! Every flow starts the same way (arguments checked, a payment opened: see
//! `paid::payment`) and ends the same way (the paid payment run and settled once); they
//! differ in how the payer is shown the link and how the client comes back.

pub(crate) mod dynamic_tools;
mod elicitation;
mod input_required;
mod progress;
mod resubmit;
mod two_step;

use crate::answers::payment_required;
use crate::mode::Mode;
use crate::paid::{client_elicitation, confirm_tool_name, is_newer, Caller, Paid};
use crate::price::Price;
use crate::store::PendingPayment;
use rmcp::model::CallToolResponse;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};

/// How this call gets paid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    TwoStep,
    Resubmit,
    DynamicTools,
    Progress,
    /// A server request to the client (MCP 2025-11-25).
    Elicitation,
    /// An input-required round trip (MCP 2026-07-28).
    InputRequired,
}

impl Flow {
    /// ELICITATION (chosen, or picked by AUTO) only where the client declares it (a
    /// capability that is missing or null counts as absent), else two steps.
    pub(crate) fn resolve(mode: Mode, cx: &RequestContext<RoleServer>) -> Flow {
        match mode {
            Mode::TwoStep => Flow::TwoStep,
            Mode::Resubmit => Flow::Resubmit,
            Mode::DynamicTools => Flow::DynamicTools,
            Mode::Progress => Flow::Progress,
            Mode::Elicitation | Mode::Auto if client_elicitation(cx).is_none() => Flow::TwoStep,
            Mode::Elicitation | Mode::Auto if is_newer(cx) => Flow::InputRequired,
            Mode::Elicitation | Mode::Auto => Flow::Elicitation,
        }
    }

    /// What the answer tells the client to do once the payer has paid.
    pub(crate) fn next_step(self, tool: &str) -> String {
        match self {
            Flow::Resubmit => {
                format!("call `{tool}` again with the same arguments and this payment_id")
            }
            Flow::DynamicTools => format!(
                "call `{}` (now in the tool list) with this payment_id",
                confirm_tool_name(tool)
            ),
            Flow::InputRequired => format!("call `{tool}` again"),
            Flow::TwoStep | Flow::Progress | Flow::Elicitation => {
                format!("call `{}` with this payment_id", confirm_tool_name(tool))
            }
        }
    }
}

impl<S: ServerHandler> Paid<S> {
    /// Answers a new priced call whose payment is open, as its flow does.
    pub(crate) async fn start_flow(
        &self,
        flow: Flow,
        pending: PendingPayment,
        price: Price,
        caller: &Caller,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = flow.next_step(&pending.tool);
        match flow {
            Flow::TwoStep | Flow::Resubmit => {
                Ok(payment_required(&pending, &price, &next, "payment_required").into())
            }
            Flow::DynamicTools => {
                self.open_confirm_tool(&pending, caller, &cx).await;
                Ok(payment_required(&pending, &price, &next, "payment_required").into())
            }
            Flow::Progress => self.progress_call(pending, price, cx).await,
            Flow::Elicitation => self.elicitation_call(pending, price, cx).await,
            Flow::InputRequired => Ok(self.input_required(&pending, &price, &cx)),
        }
    }
}
