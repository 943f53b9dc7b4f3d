//! DataLoader plumbing: every domain registers its per-request loaders once, for every
//! request, through [`Loaders`]; a request builds each of them only when a field first
//! asks for it ([`RequestLoaders`]), and fields load through [`load_one`]. One loader of
//! a type per operation, shared by all its fields, so batching is per operation; an
//! operation that loads nothing (most mutations, a subscription's idle feed) builds none.
//! Loaders hold a [`TxRef`], never the transaction itself, so they cannot outlive the
//! operation's commit.

use std::{
    any::{Any, TypeId},
    collections::HashMap,
    hash::Hash,
    sync::{Arc, Mutex, PoisonError},
};

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

/// One per-request value, built for an operation's transaction and caller.
type Build = Box<dyn Fn(TxRef, Identity) -> Arc<dyn Any + Send + Sync> + Send + Sync>;

/// How to build every per-request loader, by type: filled once by the domains
/// (`domains::register_loaders`), then shared by every request.
#[derive(Default)]
pub struct Loaders {
    builds: HashMap<TypeId, Build>,
}

impl Loaders {
    /// No loader yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers the loader `make(tx, identity)` builds, as a `DataLoader` of it.
    pub fn register<L, K>(self, make: impl Fn(TxRef, Identity) -> L + Send + Sync + 'static) -> Self
    where
        L: Loader<K, Error = Arc<ApiError>>,
        K: Send + Sync + Hash + Eq + Clone + 'static,
    {
        self.data(move |tx, identity| DataLoader::new(make(tx, identity), tokio::spawn))
    }

    /// Registers per-request data `make(tx, identity)` builds that is not a DataLoader
    /// (e.g. [`super::nested::FirstPages`], which loads sibling pages on its own).
    pub fn data<D: Any + Send + Sync>(
        mut self,
        make: impl Fn(TxRef, Identity) -> D + Send + Sync + 'static,
    ) -> Self {
        let build: Build = Box::new(move |tx, identity| Arc::new(make(tx, identity)));
        self.builds.insert(TypeId::of::<D>(), build);
        self
    }

    /// Attaches `self`'s loaders to `request`, to be built on first use for `identity`
    /// reading through `tx`.
    pub fn attach(&'static self, request: Request, tx: TxRef, identity: Identity) -> Request {
        request.data(RequestLoaders {
            loaders: self,
            tx,
            identity,
            built: Mutex::default(),
        })
    }
}

/// One operation's loaders: those built so far, and what builds the others.
pub struct RequestLoaders {
    loaders: &'static Loaders,
    tx: TxRef,
    identity: Identity,
    /// Few (one per type a field has asked for), so a list, empty until then.
    built: Mutex<Vec<(TypeId, Arc<dyn Any + Send + Sync>)>>,
}

impl RequestLoaders {
    /// The operation's `D`, built now if no field asked for it before. Built under the
    /// lock, so fields asking at once share one (and so one batch).
    fn get<D: Any + Send + Sync>(&self) -> ApiResult<Arc<D>> {
        let id = TypeId::of::<D>();
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let value = match built.iter().find(|(built, _)| *built == id) {
            Some((_, value)) => value.clone(),
            None => {
                let build = self
                    .loaders
                    .builds
                    .get(&id)
                    .ok_or_else(|| ApiError::bug("a per-request loader was not registered"))?;
                let value = build(self.tx.clone(), self.identity);
                built.push((id, value.clone()));
                value
            }
        };
        value
            .downcast()
            .map_err(|_| ApiError::bug("a per-request loader of another type"))
    }
}

/// The operation's per-request `D` (registered with [`Loaders::data`]).
pub fn data<D: Any + Send + Sync>(ctx: &Context<'_>) -> ApiResult<Arc<D>> {
    ctx.data::<RequestLoaders>()
        .map_err(|_| ApiError::bug("the request has no loaders"))?
        .get::<D>()
}

/// Loads one value with the request's loader `L`, batched with its siblings.
pub async fn load_one<L, K>(ctx: &Context<'_>, key: K) -> ApiResult<Option<L::Value>>
where
    L: Loader<K, Error = Arc<ApiError>>,
    K: Send + Sync + Hash + Eq + Clone + 'static,
{
    data::<DataLoader<L>>(ctx)?
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
        let tx = self.tx.get().await.map_err(Arc::new)?;
        let rows = E::find()
            .filter(self.column.is_in(keys.iter().copied()))
            .filter(self.readable.clone())
            .all(&*tx)
            .await
            .map_err(|e| Arc::new(ApiError::from(e)))?;
        Ok(rows.into_iter().map(self.node).collect())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use async_graphql::{EmptyMutation, EmptySubscription, Object, Schema};

    use super::*;
    use crate::{
        db::{Database, PendingTx},
        error::ApiError,
    };

    /// Doubles its keys, recording the keys of each batch it is asked for.
    struct Doubler(Arc<Mutex<Vec<Vec<u32>>>>);

    impl Loader<u32> for Doubler {
        type Value = u32;
        type Error = Arc<ApiError>;

        async fn load(&self, keys: &[u32]) -> Result<HashMap<u32, u32>, Self::Error> {
            let mut batch = keys.to_vec();
            batch.sort_unstable();
            self.0.lock().expect("not poisoned").push(batch);
            Ok(keys.iter().map(|key| (*key, key * 2)).collect())
        }
    }

    struct Query;

    #[Object]
    impl Query {
        async fn double(&self, ctx: &Context<'_>, n: u32) -> ApiResult<Option<u32>> {
            load_one::<Doubler, _>(ctx, n).await
        }

        async fn constant(&self) -> u32 {
            1
        }
    }

    /// A loader is built only when a field first asks for it, once per operation:
    /// sibling fields share it, so their keys are loaded in one batch.
    #[tokio::test]
    async fn a_loader_is_built_on_first_use_once_per_operation() {
        let built = Arc::new(AtomicUsize::new(0));
        let batches = Arc::new(Mutex::new(Vec::new()));
        let loaders = Loaders::new().register({
            let (built, batches) = (built.clone(), batches.clone());
            move |_, _| {
                built.fetch_add(1, Ordering::Relaxed);
                Doubler(batches.clone())
            }
        });
        let loaders: &'static Loaders = Box::leak(Box::new(loaders));
        let db = Database::connect("sqlite::memory:", 1)
            .await
            .expect("an in-memory database");
        let schema = Schema::new(Query, EmptyMutation, EmptySubscription);
        let run = async |query: &str| {
            let request = Request::new(query);
            // Never opened: the loader reads no database.
            let unused = PendingTx::new(Box::pin(async { Err(ApiError::bug("opened")) }), &db);
            let request = loaders.attach(request, unused.handle(), Identity::ANONYMOUS);
            let response = schema.execute(request).await;
            assert!(response.is_ok(), "{:?}", response.errors);
            response.data.to_string()
        };

        assert_eq!(run("{ constant }").await, "{constant: 1}");
        assert_eq!(built.load(Ordering::Relaxed), 0, "built but never used");

        let doubled = run("{ a: double(n: 1) b: double(n: 2) c: double(n: 1) }").await;
        assert_eq!(doubled, "{a: 2, b: 4, c: 2}");
        assert_eq!(built.load(Ordering::Relaxed), 1);
        assert_eq!(*batches.lock().expect("not poisoned"), vec![vec![1, 2]]);

        run("{ double(n: 3) }").await;
        assert_eq!(built.load(Ordering::Relaxed), 2, "one per operation");
    }
}
