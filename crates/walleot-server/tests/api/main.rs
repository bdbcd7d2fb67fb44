//! Integration tests of the `/v1` API: the real service on a random port over a fresh
//! database (a SQLite file, or a PostgreSQL schema when `WALLEOT_TEST_POSTGRES` is
//! set), spoken to over real HTTP.

mod auth;
mod capture;
mod concurrency;
mod create;
mod events;
mod fuzz;
mod helpers;
mod idempotency;
mod instances;
mod lifecycle;
mod list;
mod long_poll;
mod mandates;
mod openapi;
mod rate_limits;
mod receipts;
mod refunds;
mod slow_clients;
mod webhooks;
