//! DataLoader plumbing: every domain registers its per-request loaders through
//! [`Loaders`], and fields load through [`load_one`]. Loaders hold a [`TxRef`], never the
//! transaction itself, so they cannot outlive the operation's commit.

use std::{hash::Hash, sync::Arc};

use async_graphql::{
    Context, Request,
    dataloader::{DataLoader, Loader},
};

use super::RequestContext;
use crate::{
    auth::Identity,
    db::TxRef,
    error::{ApiError, ApiResult},
};

/// The request being prepared, to which domains attach their loaders.
pub struct Loaders {
    request: Request,
    tx: TxRef,
    identity: Identity,
}

impl Loaders {
    /// Starts from `request`, whose loaders will read through `tx` as the caller of the
    /// request's [`RequestContext`] (anonymous when it has none).
    pub fn new(request: Request, tx: TxRef) -> Self {
        let identity = request
            .data
            .get(&std::any::TypeId::of::<RequestContext>())
            .and_then(|data| data.downcast_ref::<RequestContext>())
            .map_or(Identity::ANONYMOUS, RequestContext::identity);
        Self {
            request,
            tx,
            identity,
        }
    }

    /// Attaches the loader `make(tx)` builds.
    pub fn register<L, K>(mut self, make: impl FnOnce(TxRef) -> L) -> Self
    where
        L: Loader<K, Error = Arc<ApiError>>,
        K: Send + Sync + Hash + Eq + Clone + 'static,
    {
        let loader = make(self.tx.clone());
        self.request = self.request.data(DataLoader::new(loader, tokio::spawn));
        self
    }

    /// Attaches the loader `make(tx, caller)` builds, for loaders that filter what they
    /// load by the caller's read policy (SQLite has no RLS to do it for them).
    pub fn register_as<L, K>(mut self, make: impl FnOnce(TxRef, Identity) -> L) -> Self
    where
        L: Loader<K, Error = Arc<ApiError>>,
        K: Send + Sync + Hash + Eq + Clone + 'static,
    {
        let loader = make(self.tx.clone(), self.identity);
        self.request = self.request.data(DataLoader::new(loader, tokio::spawn));
        self
    }

    /// The request with every loader attached.
    pub fn finish(self) -> Request {
        self.request
    }
}

/// Loads one value with the request's loader `L`, batched with its siblings.
pub async fn load_one<L, K>(ctx: &Context<'_>, key: K) -> ApiResult<Option<L::Value>>
where
    L: Loader<K, Error = Arc<ApiError>>,
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    ctx.data::<DataLoader<L>>()
        .map_err(|_| ApiError::bug("a DataLoader was not registered"))?
        .load_one(key)
        .await
        .map_err(|e| (*e).clone())
}
