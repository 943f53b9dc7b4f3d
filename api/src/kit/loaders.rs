//! DataLoader plumbing: every domain registers its per-request loaders through
//! [`Loaders`], and fields load through [`load_one`]. Loaders hold a [`TxRef`], never the
//! transaction itself, so they cannot outlive the operation's commit.

use std::{collections::HashMap, hash::Hash, sync::Arc};

use async_graphql::{
    Context, Request,
    dataloader::{DataLoader, Loader},
};
use sea_orm::{ColumnTrait, Condition, EntityTrait, QueryFilter};
use uuid::Uuid;

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
    /// Starts from `request`, whose loaders read through `tx` for `identity`.
    pub fn new(request: Request, tx: TxRef, identity: Identity) -> Self {
        Self {
            request,
            tx,
            identity,
        }
    }

    /// Attaches the loader `make(tx, identity)` builds.
    pub fn register<L, K>(mut self, make: impl FnOnce(TxRef, Identity) -> L) -> Self
    where
        L: Loader<K, Error = Arc<ApiError>>,
        K: Send + Sync + Hash + Eq + Clone + 'static,
    {
        let loader = make(self.tx.clone(), self.identity);
        self.request = self.request.data(DataLoader::new(loader, tokio::spawn));
        self
    }

    /// Attaches per-request data `make(tx, identity)` builds that is not a DataLoader
    /// (e.g. [`super::nested::FirstPages`], which loads sibling pages on its own).
    pub fn data<D: std::any::Any + Send + Sync>(
        mut self,
        make: impl FnOnce(TxRef, Identity) -> D,
    ) -> Self {
        let data = make(self.tx.clone(), self.identity);
        self.request = self.request.data(data);
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

/// Loads rows of `E` by their UUID primary key, as far as a domain's policy lets the
/// caller read them, mapped to the GraphQL type `N`: the one by-id loader every domain
/// registers instead of writing its own. A row the caller may not read is absent.
pub struct ById<E: EntityTrait, N> {
    tx: TxRef,
    readable: Condition,
    column: E::Column,
    node: fn(E::Model) -> (Uuid, N),
}

impl<E: EntityTrait, N> ById<E, N> {
    /// A loader of `E` by `column`, filtered by `readable` (the domain's policy for the
    /// caller), mapping each row to its key and node with `node`.
    pub fn new(
        tx: TxRef,
        readable: Condition,
        column: E::Column,
        node: fn(E::Model) -> (Uuid, N),
    ) -> Self {
        Self {
            tx,
            readable,
            column,
            node,
        }
    }
}

impl<E, N> Loader<Uuid> for ById<E, N>
where
    E: EntityTrait,
    E::Model: Sync,
    N: Clone + Send + Sync + 'static,
{
    type Value = N;
    type Error = Arc<ApiError>;

    async fn load(&self, keys: &[Uuid]) -> Result<HashMap<Uuid, N>, Self::Error> {
        let tx = self.tx.get().map_err(Arc::new)?;
        let rows = E::find()
            .filter(self.column.is_in(keys.iter().copied()))
            .filter(self.readable.clone())
            .all(&*tx)
            .await
            .map_err(|e| Arc::new(ApiError::from(e)))?;
        Ok(rows.into_iter().map(self.node).collect())
    }
}
