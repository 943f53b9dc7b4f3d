//! The FlashFusion gateway: GraphQL over the FlashFusion database with biscuit-token
//! auth, Postgres Row Level Security per request, and an embedded SQLite default.
//!
//! Modules import only from below (ARCHITECTURE.md has the map):
//! `error`, `config`, `validate`, `auth`, `secrets`, `limits`, `documents` → `db` →
//! `realtime`, `fanout` → `metrics` → `state` → `session` → `kit` → `domains` → `schema`
//! → `pipeline` → `ws`, `graphiql` → `http` → `app`, `cli`, `worker` (a GraphQL client
//! of the gateway, importing only `config`). The binary (`main.rs`) only parses the
//! command line and calls [`cli::run`].

pub mod app;
pub mod auth;
pub mod cli;
pub mod client;
pub mod config;
pub mod db;
pub mod documents;
pub mod domains;
pub mod error;
pub mod fanout;
pub mod graphiql;
pub mod http;
pub mod kit;
pub mod limits;
pub mod metrics;
pub mod pipeline;
pub mod realtime;
pub mod schema;
pub mod secrets;
pub mod session;
pub mod state;
mod validate;
pub mod worker;
pub mod ws;
