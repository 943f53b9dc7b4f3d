//! End-to-end tests: each test starts the real gateway router on its own fresh Postgres
//! database (or SQLite where it says so) and talks to it as a web client would.

/// Runs each named scenario (an `async fn(TestApp)`) against both backends: Postgres,
/// where policies and resolvers both guard, and SQLite, where the resolvers alone do, so
/// a resolver check that RLS would mask cannot go missing unnoticed.
macro_rules! on_both_backends {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[tokio::test]
            async fn postgres() {
                super::$scenario(flashfusion_tests::TestApp::postgres().await).await;
            }

            #[tokio::test]
            async fn sqlite() {
                super::$scenario(flashfusion_tests::TestApp::sqlite().await).await;
            }
        }
    )*};
}

mod abuse;
mod account_data;
mod agent_task_access;
mod agent_tasks;
mod api_keys;
mod auth;
mod browser;
mod caches;
mod catalog;
mod code_generations;
mod conformance;
mod deployments;
mod faults;
mod fixtures;
mod hostile;
mod http;
mod integrations;
mod limits;
mod matrix;
mod metrics;
mod migrations;
mod parity;
mod policies;
mod production;
mod production_mode;
mod projects;
mod revocations;
mod round_trips;
mod scoping;
mod secrets;
mod secrets_matrix;
mod subscriptions;
mod task_effects;
mod task_queue;
mod websocket;
mod work_matrix;
mod work_support;
mod worker;

use serde_json::Value;

/// The `extensions.code` of the first error of a response, or "" when it has none.
pub fn code(response: &Value) -> &str {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_default()
}
