//! End-to-end scenarios: each starts the real `sling` and `sling-proxy` binaries on port 0, in
//! its own temporary directory and (for Postgres) its own database, and tells one story from
//! the outside, through the REST API and the proxy's redirects. Every story runs twice, on SQLite
//! and on Postgres (see `sling_e2e::on_both_backends!`).
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests: a failed expectation should panic

mod health;
mod keys;
mod lifecycle;
mod offline;
mod quickstart;
