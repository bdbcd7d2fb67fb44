//! RESUBMIT: the priced tool gains an optional `payment_id` argument; the first call
//! answers with the link, the retry with the same arguments and the id runs it.

use super::Flow;
use crate::answers::refusal;
use crate::paid::{Caller, Paid};
use crate::price::Price;
use crate::store::arguments_hash;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{Map, Value};

impl<S: ServerHandler> Paid<S> {
    /// RESUBMIT's second call: the same arguments with the payment id.
    pub(crate) async fn resubmitted(
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
        let next = Flow::Resubmit.next_step(tool);
        self.run_paid(&pending, price, &next, cx).await
    }
}
