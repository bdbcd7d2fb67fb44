//! DYNAMIC_TOOLS: a caller's confirm tool is listed while a payment of its tool is open:
//! from the payment request until the result is handed out, the payment ends unpaid, or
//! its link expires. Changes are announced with `notifications/tools/list_changed` (MCP
//! 2025-11-25) or on the `subscriptions/listen` stream (2026-07-28).
//!
//! Only the listing depends on it: a confirmation is accepted whenever its payment id
//! is valid, so a client that lost an answer can always ask again.

use crate::paid::{is_newer, now_unix, Caller, Paid};
use crate::store::PendingPayment;
use rmcp::service::{RequestContext, RoleServer, SubscriptionContext};
use rmcp::{ErrorData as McpError, ServerHandler};
use std::collections::HashMap;
use std::sync::Mutex;

/// Payment id → the Unix second its session expires.
type Expiries = HashMap<String, i64>;
/// Caller → tool → open payments.
type ByCaller = HashMap<String, HashMap<String, Expiries>>;

#[derive(Default)]
pub(crate) struct OpenConfirms {
    open: Mutex<ByCaller>,
}

impl OpenConfirms {
    fn lock(&self) -> std::sync::MutexGuard<'_, ByCaller> {
        self.open.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Opens a payment; true when the caller's confirm tool thereby appears. Before and
    /// after are read under one lock, so a concurrent close cannot lose an announcement.
    pub(crate) fn open(
        &self,
        owner: &str,
        tool: &str,
        payment_id: &str,
        expires_unix: i64,
        now: i64,
    ) -> bool {
        let mut all = self.lock();
        let before = present(&mut all, owner, tool, now);
        all.entry(owner.to_string())
            .or_default()
            .entry(tool.to_string())
            .or_default()
            .insert(payment_id.to_string(), expires_unix);
        !before
    }

    /// Closes a payment; true when the caller's confirm tool thereby disappears.
    pub(crate) fn close(&self, owner: &str, tool: &str, payment_id: &str, now: i64) -> bool {
        let mut all = self.lock();
        let before = present(&mut all, owner, tool, now);
        if let Some(ids) = all.get_mut(owner).and_then(|tools| tools.get_mut(tool)) {
            ids.remove(payment_id);
        }
        before && !present(&mut all, owner, tool, now)
    }

    /// Whether the caller has an open payment of `tool`; forgets expired ones.
    pub(crate) fn is_open(&self, owner: &str, tool: &str, now: i64) -> bool {
        present(&mut self.lock(), owner, tool, now)
    }
}

/// Whether `owner` has an open payment of `tool` at `now`, forgetting expired ones.
fn present(all: &mut ByCaller, owner: &str, tool: &str, now: i64) -> bool {
    let Some(tools) = all.get_mut(owner) else {
        return false;
    };
    if let Some(ids) = tools.get_mut(tool) {
        ids.retain(|_, expires| *expires > now);
    }
    tools.retain(|_, ids| !ids.is_empty());
    let open = tools.contains_key(tool);
    if tools.is_empty() {
        all.remove(owner);
    }
    open
}

impl<S: ServerHandler> Paid<S> {
    /// Tells the client its tool list changed: a notification on MCP 2025-11-25 and
    /// earlier, an event on the `subscriptions/listen` stream on 2026-07-28.
    async fn announce_tool_list_change(&self, cx: &RequestContext<RoleServer>) {
        if is_newer(cx) {
            let _ = self.walleot.changes.send(());
        } else {
            let _ = cx.peer.notify_tool_list_changed().await;
        }
    }

    /// A payment opened: its caller's confirm tool appears. An anonymous stateless
    /// caller, who cannot be told apart, sees the confirm tools always.
    pub(crate) async fn open_confirm_tool(
        &self,
        pending: &PendingPayment,
        caller: &Caller,
        cx: &RequestContext<RoleServer>,
    ) {
        let Some(owner) = &caller.owner else {
            return;
        };
        if self.walleot.open.open(
            owner,
            &pending.tool,
            &pending.payment_id,
            pending.expires_unix,
            now_unix(),
        ) {
            self.announce_tool_list_change(cx).await;
        }
    }

    /// A payment's result was handed out or it ended unpaid: its confirm tool goes
    /// once no other payment of the caller's keeps it.
    pub(crate) async fn close_confirm_tool(
        &self,
        pending: &PendingPayment,
        cx: &RequestContext<RoleServer>,
    ) {
        if self.walleot.open.close(
            &pending.owner,
            &pending.tool,
            &pending.payment_id,
            now_unix(),
        ) {
            self.announce_tool_list_change(cx).await;
        }
    }

    /// Whether the caller's confirm tool of `tool` is listed now.
    pub(crate) fn confirm_tool_open(&self, tool: &str, owner: Option<&str>) -> bool {
        match owner {
            Some(owner) => self.walleot.open.is_open(owner, tool, now_unix()),
            None => true,
        }
    }

    /// Streams the changes of tool lists to a `subscriptions/listen` subscriber.
    pub(crate) async fn listen_for_tool_changes(
        &self,
        context: SubscriptionContext,
    ) -> Result<(), McpError> {
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_confirm_tool_shows_while_a_payment_of_its_caller_is_open() {
        let confirms = OpenConfirms::default();
        assert!(confirms.open("alice", "add", "p1", 100, 0));
        assert!(
            !confirms.open("alice", "add", "p2", 100, 0),
            "already shown"
        );
        assert!(!confirms.is_open("bob", "add", 0));
        assert!(!confirms.close("alice", "add", "p1", 0), "p2 is still open");
        assert!(confirms.close("alice", "add", "p2", 0));
        assert!(!confirms.is_open("alice", "add", 0));
    }

    #[test]
    fn expired_payments_close_by_themselves() {
        let confirms = OpenConfirms::default();
        confirms.open("alice", "add", "p1", 100, 0);
        assert!(confirms.is_open("alice", "add", 99));
        assert!(!confirms.is_open("alice", "add", 100));
        assert!(
            confirms.lock().is_empty(),
            "nothing is kept for an expired payment"
        );
    }
}
