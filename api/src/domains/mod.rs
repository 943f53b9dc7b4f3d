//! The domains, one folder each: GraphQL types and resolvers (`mod.rs`), the one
//! statement of who may read and write (`policy.rs`, mirroring the table's RLS
//! policies, used by resolvers, list conditions and tests alike) and the SQL (`repo.rs`).
//!
//! Domains import the kit and below. A domain may import one beneath it for a related
//! type or rule (everything project-owned imports `projects`); `projects` imports no
//! other domain. Fields from a parent to its children (`Project.tasks`, ...) would point
//! upward, so they are attached in `edges`, above every domain.

use std::sync::LazyLock;

use async_graphql::Request;

use crate::{
    auth::Identity,
    db::TxRef,
    kit::{loaders::Loaders, profiles},
};

pub mod accounts;
pub mod agent_tasks;
pub mod api_keys;
pub mod billing;
pub mod catalog;
pub mod code_generations;
pub mod deployments;
mod edges;
pub mod integrations;
pub mod notifications;
pub mod projects;
pub mod usage;

/// How every domain's per-request loaders are built, registered once.
static LOADERS: LazyLock<Loaders> = LazyLock::new(|| {
    let loaders = Loaders::new();
    let loaders = profiles::register(loaders);
    let loaders = projects::register(loaders);
    let loaders = agent_tasks::register(loaders);
    let loaders = deployments::register(loaders);
    let loaders = code_generations::register(loaders);
    let loaders = catalog::register(loaders);
    billing::register(loaders)
});

/// Attaches every domain's per-request DataLoaders to `request`, each built when a field
/// of the operation first asks for it.
pub fn register_loaders(request: Request, tx: TxRef, identity: Identity) -> Request {
    LOADERS.attach(request, tx, identity)
}
