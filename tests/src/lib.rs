//! The end-to-end test harness: a fresh Postgres database per test (cloned from a
//! template migrated once per run, dropped afterwards) and a [`TestApp`] that serves the
//! real gateway router on a free port and speaks HTTP and WebSocket to it, as a web
//! client would.
//!
//! When no server answers but PostgreSQL is installed, the harness starts a private
//! cluster ([`Cluster`]) and uses it. If Postgres cannot be reached the harness panics with how to start it: a test of
//! Postgres behaviour never silently skips.

mod actors;
mod app;
mod cluster;
mod database;
mod metrics;
mod wait;

pub use actors::{
    Actor, Actors, Case, create_project, create_visible_project, outcome, run_matrix, scoped,
};
pub use app::{Client, PANIC_ROUTE, TIMEOUT, TestApp, WsClient, WsEnd, bearer};
pub use cluster::Cluster;
pub use database::{TestDb, test_database_url};
pub use metrics::Scrape;
pub use wait::{
    eventually, statements_waiting_on_locks, until_the_clock_reaches, waiting_on_locks,
    whole_seconds_from_now,
};
