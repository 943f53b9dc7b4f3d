//! sea-orm entities of the FlashFusion database, one module per table (plus the `profiles`
//! view).
//!
//! This crate owns the Rust shape of every row and of every checked enumeration; the SQL
//! that creates them lives in the `migration` crate and must agree with it column for
//! column. It must never know about GraphQL, HTTP or authorization: the API derives its own
//! output types from these models, and Postgres row-level security plus the API's checks
//! decide who sees which row.

pub mod agent_tasks;
pub mod agents;
pub mod ai_services;
pub mod billing;
pub mod code_generations;
pub mod deployments;
pub mod events;
pub mod integrations;
pub mod notifications;
pub mod profiles;
pub mod projects;
pub mod revoked_tokens;
pub mod usage_analytics;
pub mod user_api_keys;
pub mod users;
