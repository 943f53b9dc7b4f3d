//! End-to-end tests: each test starts the real gateway router on its own fresh Postgres
//! database (or SQLite where it says so) and talks to it as a web client would.

mod auth;
mod http;
mod migrations;
mod production;
mod projects;

use serde_json::Value;

/// The `extensions.code` of the first error of a response, or "" when it has none.
pub fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}
