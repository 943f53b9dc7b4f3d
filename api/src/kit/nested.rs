//! Child lists under a page of parents (`Project.tasks`, `Project.deployments`): the
//! first page of every sibling parent, with each one's count, in one statement, loaded
//! once per request and shared by the sibling fields. Cursors and `last` fall back to
//! the per-field [`paginate`] path.
//!
//! A domain describes its list with [`ChildList`], registers [`FirstPages`] and answers
//! its field with [`child_page`]. Every first page is loaded together, not through a
//! DataLoader's time window: resolving a page of 100 parents takes longer than the
//! window in debug builds, which then split it into several statements.

use std::{
    collections::HashMap,
    future::Future,
    hash::Hash,
    marker::PhantomData,
    sync::{Arc, Weak},
};

use async_graphql::{Context, OutputType};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, IdenStatic, PartialModelTrait,
    QueryFilter, Select,
};
use tokio::sync::{Mutex, OnceCell};
use uuid::Uuid;

use super::{
    RequestContext,
    loaders::{self, Loaders},
    pagination::{
        Page, PageArgs, TOTAL_IN_PARENT, empty_page, first_page, newest_per_parent, paginate,
    },
};
use crate::{
    auth::Identity,
    db::{Tx, TxRef},
    error::ApiResult,
};

/// A list of child rows hanging off a parent row.
pub trait ChildList: Send + Sync + 'static {
    /// The child table.
    type Entity: EntityTrait<Model: PartialModelTrait + Send + Sync>;
    /// What the field filters on besides the parent (e.g. a status).
    type Filter: Copy + Eq + Hash + Send + Sync + 'static;
    /// The GraphQL type of one child.
    type Node: OutputType + Clone + From<<Self::Entity as EntityTrait>::Model>;

    /// The column naming the parent (e.g. `project_id`).
    const PARENT: <Self::Entity as EntityTrait>::Column;
    /// The UUIDv7 key the list is ordered and paged by.
    const ID: <Self::Entity as EntityTrait>::Column;

    /// The rows `identity` may read with `filter`, of every parent.
    fn readable(identity: Identity, filter: Self::Filter) -> Select<Self::Entity>;
    /// A row's parent and key.
    fn parent_and_key(row: &<Self::Entity as EntityTrait>::Model) -> (Uuid, Uuid);
    /// Whether `identity` reads any child at all: anonymous callers read no
    /// project-owned rows (their role has no grant on those tables), so they get an
    /// empty page instead of Postgres' refusal.
    fn reads_any(identity: Identity) -> bool {
        identity.role().is_some()
    }

    /// The nodes of rows loaded for many parents at once, in order: the place to batch
    /// what every node shows (a task's agent). By default each row converts alone.
    fn nodes(
        _db: &Tx,
        _identity: Identity,
        rows: Vec<<Self::Entity as EntityTrait>::Model>,
    ) -> impl Future<Output = ApiResult<Vec<Self::Node>>> + Send {
        async move { Ok(rows.into_iter().map(Self::Node::from).collect()) }
    }
}

/// The first pages of one child list, per request: `limit + 1` newest children of each
/// parent (the extra one tells whether there is a next page) and each parent's count.
pub struct FirstPages<L: ChildList> {
    tx: TxRef,
    identity: Identity,
    /// The pages of each list of sibling parents, loaded once per (siblings, filter,
    /// limit) and transaction: the first field to ask loads them all, the others wait
    /// for it.
    memo: Mutex<Memo<L>>,
    list: PhantomData<L>,
}

/// What [`FirstPages`] loaded, and in which transaction. A subscription's operation
/// lives on and runs each delivery in a transaction of its own: what an earlier one
/// loaded is stale by then, so a new transaction starts from nothing. (The `Weak` keeps
/// the old transaction's allocation, so a new one cannot reuse its address.)
struct Memo<L: ChildList> {
    tx: Weak<Tx>,
    pages: HashMap<MemoKey<L>, Loaded<L>>,
}

impl<L: ChildList> Memo<L> {
    /// The pages loaded in `tx`, forgetting any loaded in another transaction.
    fn of(&mut self, tx: &Arc<Tx>) -> &mut HashMap<MemoKey<L>, Loaded<L>> {
        let current = Arc::downgrade(tx);
        if !self.tx.ptr_eq(&current) {
            self.tx = current;
            self.pages.clear();
        }
        &mut self.pages
    }
}

/// The sibling parents, the filter and the page size a set of first pages was loaded for.
type MemoKey<L> = (Arc<[Uuid]>, <L as ChildList>::Filter, usize);

/// First pages being or done loading, shared by the sibling fields that wait for them.
type Loaded<L> = Arc<OnceCell<Pages<L>>>;

/// Each parent's first page: its nodes with their keys, and its count.
type Pages<L> = HashMap<Uuid, (Vec<(Uuid, <L as ChildList>::Node)>, u64)>;

/// Registers the first pages of list `L` for a request.
pub fn register<L: ChildList>(loaders: Loaders) -> Loaders {
    loaders.data(|tx, identity| FirstPages::<L> {
        tx,
        identity,
        memo: Mutex::new(Memo {
            tx: Weak::new(),
            pages: HashMap::new(),
        }),
        list: PhantomData,
    })
}

impl<L: ChildList> FirstPages<L> {
    /// The first page of `parent`, loaded together with those of its `siblings`.
    async fn page_among(
        &self,
        parent: Uuid,
        siblings: &Arc<[Uuid]>,
        filter: L::Filter,
        limit: usize,
    ) -> ApiResult<(Vec<(Uuid, L::Node)>, u64)> {
        let siblings = if siblings.contains(&parent) {
            siblings.clone()
        } else {
            Arc::from([parent])
        };
        let tx = self.tx.get().await?;
        let cell = self
            .memo
            .lock()
            .await
            .of(&tx)
            .entry((siblings.clone(), filter, limit))
            .or_default()
            .clone();
        let pages = cell
            .get_or_try_init(|| self.load(&tx, &siblings, filter, limit))
            .await?;
        Ok(pages.get(&parent).cloned().unwrap_or_default())
    }

    /// One statement for the first pages of `parents`, then their nodes at once.
    async fn load(
        &self,
        tx: &Tx,
        parents: &[Uuid],
        filter: L::Filter,
        limit: usize,
    ) -> ApiResult<Pages<L>> {
        let query =
            L::readable(self.identity, filter).filter(L::PARENT.is_in(parents.iter().copied()));
        let backend = tx.get_database_backend();
        let statement = newest_per_parent(backend, query, L::PARENT.as_str(), limit);
        let mut rows = Vec::new();
        let mut totals = HashMap::new();
        for row in tx.query_all_raw(statement).await? {
            let model = <L::Entity as EntityTrait>::Model::from_query_result(&row, "")?;
            let total: i64 = row.try_get("", TOTAL_IN_PARENT)?;
            totals.insert(
                L::parent_and_key(&model).0,
                u64::try_from(total).unwrap_or(0),
            );
            rows.push(model);
        }
        let keys: Vec<(Uuid, Uuid)> = rows.iter().map(L::parent_and_key).collect();
        let nodes = L::nodes(tx, self.identity, rows).await?;
        let mut pages: Pages<L> = HashMap::new();
        for ((parent, key), node) in keys.into_iter().zip(nodes) {
            pages.entry(parent).or_default().0.push((key, node));
        }
        for (parent, total) in totals {
            pages.entry(parent).or_default().1 = total;
        }
        Ok(pages)
    }
}

/// One page of `L` under `parent` (already readable by the caller and allowed by its
/// token), as the caller may read it; `siblings` are the parents on the same page.
pub async fn child_page<L: ChildList>(
    ctx: &Context<'_>,
    parent: Uuid,
    siblings: &Arc<[Uuid]>,
    filter: L::Filter,
    args: PageArgs,
) -> ApiResult<Page<L::Node>> {
    let rc = RequestContext::of(ctx)?;
    if !L::reads_any(rc.identity()) {
        return Ok(empty_page());
    }
    if let Some(limit) = args.first_without_cursor()? {
        let (rows, total) = loaders::data::<FirstPages<L>>(ctx)?
            .page_among(parent, siblings, filter, limit)
            .await?;
        return Ok(first_page(
            rows,
            limit,
            Box::new(move |_| Box::pin(async move { Ok(total) })),
        ));
    }
    paginate(
        rc.tx_ref(),
        L::readable(rc.identity(), filter).filter(L::PARENT.eq(parent)),
        (L::ID, |row: &<L::Entity as EntityTrait>::Model| {
            L::parent_and_key(row).1
        }),
        args,
        L::Node::from,
    )
    .await
}
