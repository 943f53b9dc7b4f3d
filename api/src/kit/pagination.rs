//! Relay connections for every list, built once: `first/after/last/before` with
//! keyset pagination on the time-ordered UUIDv7 primary key (newest first), `pageInfo`,
//! and `totalCount`: counted by the page's own statement (a scalar subquery) when the
//! field selects it and no cursor narrows the page, lazily by a second statement
//! otherwise. `first` defaults to [`DEFAULT_PAGE`] and is capped at [`MAX_PAGE`].

use async_graphql::{
    Context, Object, OutputType,
    connection::{Connection, ConnectionNameType, CursorType, Edge, EdgeNameType, EmptyFields},
};
use futures_util::future::BoxFuture;
use sea_orm::{
    ColumnTrait, DatabaseBackend, DbErr, EntityTrait, FromQueryResult, Order, PaginatorTrait,
    PartialModelTrait, QueryFilter, QueryOrder, QueryResult, QuerySelect, QueryTrait, Select,
    Statement,
    sea_query::{Alias, Expr, Query},
};
use uuid::Uuid;

use crate::{
    db::TxRef,
    error::{ApiError, ApiResult},
};

/// Page size when the client gives none.
pub const DEFAULT_PAGE: usize = 20;
/// Largest page a client gets, whatever it asks for.
pub const MAX_PAGE: usize = 100;

/// The four Relay arguments as the client sent them, and whether the field selects
/// `totalCount`. A list field takes them as its own arguments (async-graphql cannot
/// flatten arguments), declares
/// `complexity = "page_complexity(first, last, child_complexity)"`, and passes them on
/// with [`PageArgs::new`].
#[derive(Debug, Default, Clone)]
pub struct PageArgs {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub last: Option<i32>,
    pub before: Option<String>,
    /// The connection's selection asks for `totalCount`.
    pub total_count: bool,
}

impl PageArgs {
    /// The arguments in the order list fields declare them, for the list field being
    /// resolved in `ctx` (whose selection tells whether `totalCount` is asked for).
    pub fn new(
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Self {
        Self {
            first,
            after,
            last,
            before,
            total_count: ctx.look_ahead().field("totalCount").exists(),
        }
    }
}

/// A cursor: the row's UUID, opaque to clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdCursor(Uuid);

impl CursorType for IdCursor {
    type Error = uuid::Error;

    fn decode_cursor(s: &str) -> Result<Self, Self::Error> {
        Uuid::try_parse(s).map(Self)
    }

    fn encode_cursor(&self) -> String {
        self.0.simple().to_string()
    }
}

/// How a connection counts its list when `totalCount` is asked for: given the field's
/// context, so a nested list can count through a DataLoader batched with its siblings.
pub type CountFn =
    Box<dyn for<'a, 'b> Fn(&'a Context<'b>) -> BoxFuture<'a, ApiResult<u64>> + Send + Sync>;

/// Extra connection fields: `totalCount`, counted only when asked for.
pub struct ConnectionTotals {
    count: CountFn,
}

#[Object]
impl ConnectionTotals {
    /// How many items the whole list holds.
    async fn total_count(&self, ctx: &Context<'_>) -> ApiResult<u64> {
        (self.count)(ctx).await
    }
}

/// A Relay connection of `Node`s.
pub type Page<Node> =
    Connection<IdCursor, Node, ConnectionTotals, EmptyFields, ConnectionName, EdgeName>;

/// Names a page's type `<Node>Connection`, as async-graphql's `DefaultConnectionName`
/// does, by appending rather than with `format!`: async-graphql asks for a generic
/// type's name again for every field and list item it resolves (BENCHMARKS.md,
/// "Instructions per read").
pub struct ConnectionName;

impl ConnectionNameType for ConnectionName {
    fn type_name<T: OutputType>() -> String {
        suffixed::<T>("Connection")
    }
}

/// Names an edge's type `<Node>Edge`, as async-graphql's `DefaultEdgeName` does; see
/// [`ConnectionName`].
pub struct EdgeName;

impl EdgeNameType for EdgeName {
    fn type_name<T: OutputType>() -> String {
        suffixed::<T>("Edge")
    }
}

/// `T`'s type name followed by `suffix`.
fn suffixed<T: OutputType>(suffix: &str) -> String {
    let node = T::type_name();
    let mut name = String::with_capacity(node.len() + suffix.len());
    name.push_str(&node);
    name.push_str(suffix);
    name
}

/// Which end of the (cursor-bounded) list a page is taken from.
enum End {
    /// `first`: the newest rows.
    Newest(usize),
    /// `last`: the oldest rows.
    Oldest(usize),
}

/// The validated arguments: the window between the cursors, and which end to take.
struct Window {
    end: End,
    /// Rows older than this (newest first: after it in the list).
    after: Option<Uuid>,
    /// Rows newer than this.
    before: Option<Uuid>,
    /// `totalCount` is asked for.
    total_count: bool,
}

fn decode(field: &str, cursor: Option<String>) -> ApiResult<Option<Uuid>> {
    cursor
        .map(|c| IdCursor::decode_cursor(&c).map(|c| c.0))
        .transpose()
        .map_err(|_| ApiError::bad_input(format!("{field}: not a valid cursor")))
}

fn size(field: &str, n: i32) -> ApiResult<usize> {
    usize::try_from(n)
        .map(|n| n.min(MAX_PAGE))
        .map_err(|_| ApiError::bad_input(format!("{field}: must not be negative")))
}

impl PageArgs {
    fn window(self) -> ApiResult<Window> {
        let end = match (self.first, self.last) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_input("first and last: give one, not both"));
            }
            (None, Some(last)) => End::Oldest(size("last", last)?),
            (first, None) => End::Newest(first.map_or(Ok(DEFAULT_PAGE), |n| size("first", n))?),
        };
        Ok(Window {
            end,
            after: decode("after", self.after)?,
            before: decode("before", self.before)?,
            total_count: self.total_count,
        })
    }
}

/// A page with no rows, for callers whose role reads none of a list's table.
pub fn empty_page<N: OutputType>() -> Page<N> {
    let totals = ConnectionTotals {
        count: Box::new(|_| Box::pin(async { Ok(0) })),
    };
    Connection::with_additional_fields(false, false, totals)
}

impl PageArgs {
    /// The page size when the arguments ask for the newest rows with no cursor (only
    /// `first`, or nothing): the case a DataLoader can serve for many parents in one
    /// query. `None` when `last` or a cursor is given, so the caller falls back to
    /// [`paginate`].
    pub fn first_without_cursor(&self) -> ApiResult<Option<usize>> {
        if self.last.is_some() || self.after.is_some() || self.before.is_some() {
            return Ok(None);
        }
        self.first
            .map_or(Ok(DEFAULT_PAGE), |n| size("first", n))
            .map(Some)
    }
}

/// A first page (no cursor) assembled from rows already loaded newest first, at most
/// `limit + 1` of them (the extra one says whether there is a next page), counting the
/// whole list with `count` when `totalCount` is asked for.
pub fn first_page<N: OutputType>(
    mut rows: Vec<(Uuid, N)>,
    limit: usize,
    count: CountFn,
) -> Page<N> {
    let more = rows.len() > limit;
    rows.truncate(limit);
    let mut connection =
        Connection::with_additional_fields(false, more, ConnectionTotals { count });
    connection.edges.extend(
        rows.into_iter()
            .map(|(id, node)| Edge::new(IdCursor(id), node)),
    );
    connection
}

/// The column of [`newest_per_parent`]'s rows holding the parent's count of rows.
pub const TOTAL_IN_PARENT: &str = "total_in_parent";

/// One statement for the first page of many parents at once: the rows of `query`
/// numbered newest first within each value of the `parent` column (window functions,
/// which Postgres and SQLite 3.25+ both have), keeping the first `limit + 1` of each
/// (the extra row says whether a parent has a next page), newest first. Each row also
/// carries its parent's whole count as [`TOTAL_IN_PARENT`], so `totalCount` costs no
/// second statement.
pub fn newest_per_parent<E: EntityTrait>(
    backend: DatabaseBackend,
    query: Select<E>,
    parent: &'static str,
    limit: usize,
) -> Statement {
    let inner = query
        .expr_as(
            Expr::cust(format!(
                "row_number() over (partition by {parent} order by id desc)"
            )),
            "row_in_parent",
        )
        .expr_as(
            Expr::cust(format!("count(*) over (partition by {parent})")),
            TOTAL_IN_PARENT,
        )
        .build(backend);
    let keep = limit + 1;
    let sql = format!(
        "select * from ({}) ranked where row_in_parent <= {keep} order by id desc",
        inner.sql
    );
    match inner.values {
        Some(values) => Statement::from_sql_and_values(backend, sql, values),
        None => Statement::from_string(backend, sql),
    }
}

/// The complexity of a connection field: its children counted once per item it may
/// return, so a query cannot ask for many large pages under one complexity budget.
pub fn page_complexity(first: Option<i32>, last: Option<i32>, child_complexity: usize) -> usize {
    let items = first.or(last).map_or(DEFAULT_PAGE, |n| {
        usize::try_from(n).unwrap_or(0).min(MAX_PAGE)
    });
    items
        .max(1)
        .saturating_mul(child_complexity)
        .saturating_add(1)
}

/// Pages through `query` newest first by its UUIDv7 key column `id` (read back from a
/// row with `key`), reading rows as `R` (the entity's model, or a partial model where
/// the caller's role may not read every column) and mapping them with `node`.
pub async fn paginate<E, R, C, N>(
    tx: &TxRef,
    query: Select<E>,
    (id, key): (C, fn(&R) -> Uuid),
    args: PageArgs,
    node: impl Fn(R) -> N,
) -> ApiResult<Page<N>>
where
    E: EntityTrait,
    E::Model: Sync,
    R: PartialModelTrait + Send + Sync,
    C: ColumnTrait,
    N: OutputType,
{
    let window = args.window()?;
    // With no cursor the page's rows are the whole list's, so the page's statement can
    // count the list too. An empty page then means an empty list (it asks for at least
    // one row): a count of 0.
    let folded = window.total_count && window.after.is_none() && window.before.is_none();
    // Counted over the key alone: the caller may not be allowed to read every column.
    let count_query = query.clone().select_only().column(id);
    let count_tx = tx.clone();
    let db = tx.get().await?;
    let mut query = query;
    if let Some(after) = window.after {
        query = query.filter(id.lt(after));
    }
    if let Some(before) = window.before {
        query = query.filter(id.gt(before));
    }
    // hasPreviousPage / hasNextPage as the Relay spec allows: exact towards the end
    // the page is taken from, "a cursor was given" towards the other.
    let (order, limit) = match window.end {
        End::Newest(limit) => (Order::Desc, limit),
        End::Oldest(limit) => (Order::Asc, limit),
    };
    let query = R::select_cols(query.select_only())
        .order_by(id, order)
        .limit(limit as u64 + 1);
    let (mut rows, total) = if folded {
        // A scalar subquery over the key, computed once, rather than `count(*) over ()`,
        // which would read the whole list before the page's first row.
        let count = Query::select()
            .expr(Expr::cust("count(*)"))
            .from_subquery(count_query.clone().into_query(), Alias::new("counted"))
            .to_owned();
        let rows = query
            .expr_as(Expr::from(count), TOTAL_IN_LIST)
            .into_model::<Counted<R>>()
            .all(&*db)
            .await?;
        let total = rows.first().map_or(Ok(0), |row| {
            u64::try_from(row.total).map_err(|e| ApiError::internal("negative count", e))
        })?;
        (rows.into_iter().map(|row| row.row).collect(), Some(total))
    } else {
        (query.into_model::<R>().all(&*db).await?, None)
    };
    let more = rows.len() > limit;
    rows.truncate(limit);
    let (has_previous, has_next) = match window.end {
        End::Newest(_) => (window.after.is_some(), more),
        End::Oldest(_) => {
            rows.reverse();
            (more, window.before.is_some())
        }
    };
    let count: CountFn = match total {
        Some(total) => Box::new(move |_| Box::pin(async move { Ok(total) })),
        None => Box::new(move |_| {
            let query = count_query.clone();
            let tx = count_tx.clone();
            Box::pin(async move { Ok(query.count(&*tx.get().await?).await?) })
        }),
    };
    let mut connection =
        Connection::with_additional_fields(has_previous, has_next, ConnectionTotals { count });
    connection.edges.extend(
        rows.into_iter()
            .map(|row| Edge::new(IdCursor(key(&row)), node(row))),
    );
    Ok(connection)
}

/// The column of [`paginate`]'s rows holding the whole list's count, when folded.
const TOTAL_IN_LIST: &str = "total_in_list";

/// A row read with the list's count beside it.
struct Counted<R> {
    row: R,
    total: i64,
}

impl<R: FromQueryResult> FromQueryResult for Counted<R> {
    fn from_query_result(res: &QueryResult, pre: &str) -> Result<Self, DbErr> {
        Ok(Self {
            row: R::from_query_result(res, pre)?,
            total: res.try_get(pre, TOTAL_IN_LIST)?,
        })
    }
}
