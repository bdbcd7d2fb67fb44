//! The Walleot payment service: the merchant REST API under `/v1`, its storage, and the
//! operator commands of the `walleot` binary.
//!
//! [`startup::Application`] builds the whole service from a [`startup::Config`]; the
//! binary and the integration tests start the very same thing.

pub mod app;
pub mod cli;
pub mod delivery;
pub mod domain;
pub mod http;
pub mod pages;
pub mod ratelimit;
pub mod startup;
pub mod store;
pub mod telemetry;
#[cfg(feature = "test-support")]
pub mod testing;
#[cfg(feature = "test-support")]
pub mod venv;
