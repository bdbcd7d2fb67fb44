//! The one wait for a payer: long polls of the service, so a payment is seen as soon
//! as it is made, with progress between polls so that clients do not time out.

use super::Paid;
use crate::answers::{payment_required, refusal, service_failure};
use crate::price::Price;
use crate::store::PendingPayment;
use rmcp::model::*;
use rmcp::service::{RequestContext, RoleServer};
use rmcp::ServerHandler;
use std::time::Duration;
use walleot_api::SessionStatus;
use walleot_client::Session;

impl<S: ServerHandler> Paid<S> {
    /// Waits until the payer has paid, within `wait`, with long polls of the service
    /// (a payment is seen as soon as it is made), and answers the paid session; the answer
    /// to give otherwise. Where the
    /// call has a progress token, each poll first reports progress (with `message`, or a
    /// default one), so that clients and sessions do not time out; a client that no
    /// longer takes progress has gone, and the wait ends.
    pub(crate) async fn await_payment(
        &self,
        pending: &PendingPayment,
        price: &Price,
        next: &str,
        cx: &RequestContext<RoleServer>,
        wait: Duration,
        message: Option<String>,
    ) -> Result<Session, CallToolResult> {
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
                Ok(s) if s.status == SessionStatus::Paid => return Ok(s),
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
}
