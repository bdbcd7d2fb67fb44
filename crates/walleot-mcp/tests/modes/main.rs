//! End to end: the real Walleot service on a random port, an rmcp server with priced
//! tools served over streamable HTTP, and a real rmcp client. The payer pays through the
//! service's test helper (a sandbox payer, through the ledger).
//!
//! One file per mode; the harness is shared with the other test binaries.

#[path = "../support/mod.rs"]
mod support;

mod dynamic_tools;
mod elicitation;
mod input_required;
mod progress;
mod resubmit;
mod transports;
mod two_step;
