//! The FlashFusion gateway: GraphQL over the FlashFusion database with biscuit-token
//! auth, Postgres Row Level Security per request, and an embedded SQLite default.
//!
//! See ARCHITECTURE.md for the map. The binary (`main.rs`) only parses the command line
//! and calls [`cli::run`].

pub mod accounts;
pub mod app;
pub mod auth;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod graphql;
pub mod http;
mod loaders;
mod pagination;
pub mod pipeline;
pub mod projects;
mod validate;
