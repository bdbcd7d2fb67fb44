//! ELICITATION on MCP 2026-07-28 sessions, which forbid server-to-client requests: the
//! call answers an `InputRequiredResult` asking the client to show the payment link,
//! with the payment sealed in the request state; the client's retry carries the state
//! and the payer's answer back, and the tool runs once the payment is made.

use super::Flow;
use crate::answers::{payment_required, refusal};
use crate::paid::{client_elicitation, Caller, Paid};
use crate::price::Price;
use crate::seal;
use crate::store::PendingPayment;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::{ErrorData as McpError, ServerHandler};
use serde_json::{json, Map, Value};
use std::time::Duration;

impl<S: ServerHandler> Paid<S> {
    /// MCP 2026-07-28 forbids server-to-client requests: the call answers an
    /// `InputRequiredResult` asking the client to show the payment link, with the payment
    /// sealed in the request state; the client's retry carries the state back, and the
    /// tool runs once the payment is made. The seal binds the retry to this payment, tool
    /// and arguments, whichever server instance receives it.
    pub(crate) fn input_required(
        &self,
        pending: &PendingPayment,
        price: &Price,
        cx: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let url_mode = client_elicitation(cx).is_some_and(|c| c.url.is_some());
        let Some(request) = self.elicitation_request(pending, price, url_mode) else {
            let next = Flow::TwoStep.next_step(&pending.tool);
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
    pub(crate) async fn input_returned(
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
        let payment_id = json!(payment_id);
        let paid_for = self.payment_for_call(Some(&payment_id), tool, caller, &arguments);
        let pending = match paid_for.await {
            Ok(p) => p,
            Err(refused) => return Ok(refused.into()),
        };
        let next = Flow::InputRequired.next_step(tool);
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
                let next = Flow::TwoStep.next_step(tool);
                return Ok(payment_required(&pending, price, &next, "payment_required").into());
            }
        }
        let wait = if says_unpaid {
            Duration::ZERO
        } else {
            self.walleot.wait_for_payment
        };
        match self
            .await_payment(&pending, price, &next, &cx, wait, None)
            .await
        {
            Ok(seen) => self.run_paid(&pending, price, &next, Some(seen), cx).await,
            Err(answer) => Ok(answer.into()),
        }
    }
}
