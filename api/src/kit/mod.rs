//! The shared kit every domain builds on, and which knows no domain: the request
//! context, authorization helpers and scoped listing, Relay pagination, DataLoader
//! plumbing, the public profile loader, common payloads, enum mirroring, money, child lists batched under a page of
//! parents, the fast path for list items' plain fields, and the feed every
//! subscription reads.

pub mod authz;
mod context;
pub mod enums;
pub mod feed;
pub mod loaders;
pub mod money;
pub mod nested;
pub mod pagination;
pub mod payloads;
pub mod plain;
pub mod profiles;

pub use context::{RequestContext, app_state, parse_id, parse_optional_id};
