//! PROGRESS: the payment link streams in progress notifications while the call waits
//! for the payer, then the tool runs in the same call.

use super::Flow;
use crate::answers::payment_required;
use crate::paid::Paid;
use crate::price::Price;
use crate::store::PendingPayment;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};

impl<S: ServerHandler> Paid<S> {
    /// Streams the payment link in progress notifications while waiting for the payer,
    /// then runs the tool in the same call. Without a progress token, or when the wait
    /// ends, the answer names the confirm tool instead, so that nothing is lost.
    pub(crate) async fn progress_call(
        &self,
        pending: PendingPayment,
        price: Price,
        cx: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let next = Flow::Progress.next_step(&pending.tool);
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
            Ok(seen) => self.run_paid(&pending, &price, &next, Some(seen), cx).await,
            Err(answer) => Ok(answer.into()),
        }
    }
}
