//! RESUBMIT: the priced tool gains an optional `payment_id` argument; the first call
//! answers with the link, the retry with the same arguments and the id runs it.

use super::Flow;
use crate::paid::{Caller, Paid};
use crate::price::Price;
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
        let paid_for = self.payment_for_call(Some(&payment_id), tool, caller, &arguments);
        let pending = match paid_for.await {
            Ok(p) => p,
            Err(refused) => return Ok(refused.into()),
        };
        let next = Flow::Resubmit.next_step(tool);
        self.run_paid(&pending, price, &next, None, cx).await
    }
}
