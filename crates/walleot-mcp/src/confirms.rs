//! DYNAMIC_TOOLS: which confirm tools each caller sees. A confirm tool is listed for its
//! caller while a payment of its tool is open: from the payment request until the
//! result is handed out, the payment ends unpaid, or its session expires.
//!
//! Only the listing depends on it: a confirmation is accepted whenever its payment id
//! is valid, so a client that lost an answer can always ask again.

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

    /// Opens a payment; true when the caller's confirm tool thereby appears.
    pub(crate) fn open(
        &self,
        owner: &str,
        tool: &str,
        payment_id: &str,
        expires_unix: i64,
        now: i64,
    ) -> bool {
        let before = self.is_open(owner, tool, now);
        self.lock()
            .entry(owner.to_string())
            .or_default()
            .entry(tool.to_string())
            .or_default()
            .insert(payment_id.to_string(), expires_unix);
        !before
    }

    /// Closes a payment; true when the caller's confirm tool thereby disappears.
    pub(crate) fn close(&self, owner: &str, tool: &str, payment_id: &str, now: i64) -> bool {
        let before = self.is_open(owner, tool, now);
        if let Some(tools) = self.lock().get_mut(owner) {
            if let Some(ids) = tools.get_mut(tool) {
                ids.remove(payment_id);
            }
        }
        before && !self.is_open(owner, tool, now)
    }

    /// Whether the caller has an open payment of `tool`; forgets expired ones.
    pub(crate) fn is_open(&self, owner: &str, tool: &str, now: i64) -> bool {
        let mut all = self.lock();
        let Some(tools) = all.get_mut(owner) else {
            return false;
        };
        let open = match tools.get_mut(tool) {
            Some(ids) => {
                ids.retain(|_, expires| *expires > now);
                !ids.is_empty()
            }
            None => false,
        };
        tools.retain(|_, ids| !ids.is_empty());
        if tools.is_empty() {
            all.remove(owner);
        }
        open
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
