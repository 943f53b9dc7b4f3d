//! The database handle and the per-request transaction that makes RLS apply.
//!
//! [`Database::begin`] and [`Database::begin_session`] are the only ways request code
//! reaches the database: they open one transaction and, on Postgres, switch the role
//! and the `app.*` settings with `set_config(..., true)` (through `flashfusion_act_as`,
//! migration m20261126_000010) so the policies of the `migration` crate judge every
//! statement exactly as the resolvers do. A presented token is checked in that same
//! statement (revocations, the account and its role). This module must never hand out
//! the bare pool to request code.
//!
//! An operation's round trips on Postgres: `BEGIN; SELECT flashfusion_act_as_or_refuse(..)`
//! as one simple query (a [`PgTx`]: sea-orm cannot send a custom `BEGIN`; a session that
//! may no longer act fails it with SQLSTATE `ZF001`), the work, `COMMIT` (a read's
//! `ROLLBACK` rides with sqlx's release `Sync`: [`PgTx::end_on_release`]). On SQLite
//! sea-orm's transaction: `BEGIN`, the session check when there is a token, the work,
//! `COMMIT`. The pool does not ping a connection it hands out unless the connection sat
//! idle for [`PING_AFTER_IDLE`].

mod pg_tx;

use std::{
    sync::{
        Arc, Mutex, PoisonError, Weak,
        atomic::{AtomicU64, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use entity::{revoked_tokens, users};
use futures_util::future::BoxFuture;
use migration::{Migrator, MigratorTrait, roles};
use sea_orm::{
    ColumnTrait, ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, DbErr, EntityTrait, ExecResult, QueryFilter, QueryResult, QuerySelect,
    QueryTrait, RuntimeErr, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
    sea_query::{Expr, ExprTrait, Query},
    sqlx::error::DatabaseError,
};
use uuid::Uuid;

use self::pg_tx::{PgTx, literal};

use crate::{
    auth::{Identity, Role, Session},
    error::{ApiError, ApiResult},
};

/// A pooled connection idle for this long is pinged before it is handed out (a restart
/// or a proxy may have cut it); a busy one is not, so a request does not pay a round
/// trip for it. A connection that broke anyway fails its statement, which fails the
/// request (`INTERNAL`, or 503 when opening the transaction), and sqlx closes it
/// instead of returning it to the pool.
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(30);

/// `text` with the password of database URL `url` (`scheme://user:password@host/..`)
/// replaced by `***`. The password is taken up to the last `@`, so one holding an
/// unencoded `/` or `@` (which makes the URL unparseable) is found whole.
fn without_password(text: &str, url: &str) -> String {
    let password = url
        .split_once("://")
        .and_then(|(_, rest)| rest.rsplit_once('@'))
        .and_then(|(user_info, _)| user_info.split_once(':'))
        .map(|(_, password)| password)
        .filter(|password| !password.is_empty());
    match password {
        Some(password) => text.replace(password, "***"),
        None => text.to_owned(),
    }
}

/// How long a request waits for a pooled connection before it is refused with 503.
pub const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(3);

/// How long opening one connection may take (a server that does not answer at all).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// The key of the Postgres advisory lock that `migrate` holds while it applies
/// migrations, so replicas migrating at once take turns (the second finds nothing
/// pending). Any constant works as long as nothing else uses it: ASCII "flashfus".
const MIGRATION_LOCK: i64 = 0x666c_6173_6866_7573;

/// The migrations a database has and has not applied, against this binary's list.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Known to this binary, not applied.
    pub pending: Vec<String>,
    /// Applied, unknown to this binary (the database is newer than the binary).
    pub unknown: Vec<String>,
}

impl SchemaStatus {
    /// All migrations applied, none unknown.
    pub fn is_current(&self) -> bool {
        self.pending.is_empty() && self.unknown.is_empty()
    }
}

/// A connection pool plus which backend it speaks to.
#[derive(Debug, Clone)]
pub struct Database {
    conn: DatabaseConnection,
    /// SQL statements run so far (BEGIN/COMMIT excluded; the query that opens a
    /// Postgres request transaction counts as one), for metrics and for tests that
    /// prove nested fields are batched.
    statements: Arc<AtomicU64>,
    /// `BEGIN`s sent alone (SQLite), `COMMIT`s and `ROLLBACK`s of request transactions
    /// so far, which are not counted as statements.
    transaction_ends: Arc<AtomicU64>,
    /// Postgres' `statement_timeout` in every transaction [`Database::begin`] and
    /// [`Database::begin_session`] open; `None` leaves the server's.
    statement_timeout: Option<Duration>,
}

impl Database {
    /// Connects to `url` with at most `max_connections` pooled connections.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        // A request waits at most ACQUIRE_TIMEOUT for a pooled connection, and a new
        // connection at most CONNECT_TIMEOUT; beyond either the database is treated as
        // unavailable (503) rather than holding the request. While the server is down
        // a connection is refused at once, so requests fail after the acquire timeout
        // at worst, well under `FLASHFUSION_REQUEST_TIMEOUT`, and the pool connects
        // afresh once it is back (no restart of the gateway).
        options
            .max_connections(max_connections)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .connect_timeout(CONNECT_TIMEOUT)
            .test_before_acquire_if_idle_for(PING_AFTER_IDLE)
            .sqlx_logging(false);
        // sea-orm's errors quote the URL (one that does not parse, or names no driver):
        // never with its password, which would reach the logs.
        let mut conn = sea_orm::Database::connect(options).await.map_err(|err| {
            anyhow::anyhow!(
                "cannot connect to the database (check DATABASE_URL): {}",
                without_password(&err.to_string(), url)
            )
        })?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        conn.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        Ok(Self {
            conn,
            statements,
            transaction_ends: Arc::default(),
            statement_timeout: None,
        })
    }

    /// Makes every statement of a transaction [`Database::begin`] and
    /// [`Database::begin_session`] open fail once it has run for `limit` (Postgres'
    /// `statement_timeout`, set in the statement that switches the role, so it costs no
    /// round trip); SQLite has no such setting. The pipeline gives it the request
    /// timeout, so a statement does not outlive the request that is waiting for it.
    pub fn with_statement_timeout(mut self, limit: Duration) -> Self {
        self.statement_timeout = Some(limit);
        self
    }

    /// How many SQL statements this pool has run.
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// How many round trips request transactions have made: their statements (on
    /// Postgres the opening query, `BEGIN` included, is one) plus a `BEGIN` sent alone
    /// (SQLite) and each `COMMIT` or `ROLLBACK` (one dropped unfinished, a cancelled
    /// operation's, rolls back uncounted).
    pub fn round_trips(&self) -> u64 {
        self.statements_executed() + self.transaction_ends.load(Ordering::Relaxed)
    }

    /// Applies every pending migration. On Postgres it first takes an advisory lock
    /// ([`MIGRATION_LOCK`]) in a transaction that pins one connection of its own
    /// (`pg_advisory_xact_lock`, released when that transaction ends or its connection
    /// dies), so replicas that migrate at once run one after the other and the later
    /// ones find nothing pending. The migrations run on other pooled connections.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        let lock = if self.backend() == DatabaseBackend::Postgres {
            let lock = self
                .conn
                .begin()
                .await
                .context("cannot open the migration lock's transaction")?;
            lock.execute_raw(Statement::from_sql_and_values(
                DatabaseBackend::Postgres,
                "select pg_advisory_xact_lock($1)",
                [MIGRATION_LOCK.into()],
            ))
            .await
            .context("cannot take the migration lock")?;
            Some(lock)
        } else {
            None
        };
        let migrated = Migrator::up(&self.conn, None)
            .await
            .context("database migration failed");
        if let Some(lock) = lock {
            // Releases the lock; it held nothing else.
            lock.rollback()
                .await
                .context("cannot release the migration lock")?;
        }
        migrated
    }

    /// Which of this binary's migrations the database has applied, read as the
    /// connecting role. On Postgres through `flashfusion_applied_migrations()`
    /// (migration m20261126_000011, SECURITY DEFINER), since the gateway's login role
    /// has no grant on `seaql_migrations`; a database without that function predates
    /// it, so it counts as not current. On SQLite, the migration table itself.
    pub async fn schema_status(&self) -> anyhow::Result<SchemaStatus> {
        let sql = match self.backend() {
            DatabaseBackend::Postgres => "select version from flashfusion_applied_migrations()",
            _ => "select version from seaql_migrations",
        };
        let known: Vec<String> = Migrator::migrations()
            .iter()
            .map(|migration| migration.name().to_owned())
            .collect();
        let applied: Vec<String> = match self
            .conn
            .query_all_raw(Statement::from_string(self.backend(), sql))
            .await
        {
            Ok(rows) => rows
                .iter()
                .map(|row| row.try_get_by_index::<String>(0))
                .collect::<Result<_, _>>()
                .context("cannot read the applied migrations")?,
            // No function (Postgres) or no table yet: nothing this binary knows of the
            // state is applied. Anything else (the server is down) is an error.
            Err(err) if is_undefined(&err) => Vec::new(),
            Err(err) => return Err(err).context("cannot read which migrations are applied"),
        };
        Ok(SchemaStatus {
            pending: known
                .iter()
                .filter(|name| !applied.contains(name))
                .cloned()
                .collect(),
            unknown: applied
                .iter()
                .filter(|name| !known.contains(name))
                .cloned()
                .collect(),
        })
    }

    /// The raw connection, for start-up tasks and the CLI only.
    pub fn connection(&self) -> &DatabaseConnection {
        &self.conn
    }

    /// Which backend this is.
    pub fn backend(&self) -> DatabaseBackend {
        self.conn.get_database_backend()
    }

    /// Readiness: one round trip to the database.
    pub async fn ping(&self) -> ApiResult<()> {
        self.conn
            .ping()
            .await
            .map_err(|e| ApiError::internal("database ping failed", e))
    }

    /// Opens a transaction acting as `identity`, with no session to check (anonymous
    /// callers, the gateway's own service work). See [`Database::begin_session`].
    pub async fn begin(&self, identity: &Identity, read_only: bool) -> ApiResult<RequestTx> {
        self.open(identity, read_only, None)
            .await?
            .ok_or_else(|| ApiError::bug("a transaction with no session to check was refused"))
    }

    /// Opens the transaction of an operation presenting `session`, acting as its
    /// identity, and checks in the same statement that the session may still act
    /// (none of its revocation ids revoked, its account exists, an admin token's
    /// account is still an admin). `None` (the transaction rolled back) when it may not.
    pub async fn begin_session(
        &self,
        session: &Session,
        read_only: bool,
    ) -> ApiResult<Option<RequestTx>> {
        self.open(
            &session.identity(),
            read_only,
            Some(session.revocation_ids()),
        )
        .await
    }

    /// Opens a transaction as `identity`, checking the session when `revocation_ids`
    /// are given; `None` (rolled back) when the session may no longer act.
    ///
    /// On Postgres one simple query ([`opening`]): `BEGIN`, then the role and settings
    /// switched, the transaction made read-only when `read_only` is set, the session
    /// checked, failing with `ZF001` if it may not act. On SQLite (no roles) sea-orm's
    /// `BEGIN`, then only the check; a writing transaction takes the write lock at
    /// `BEGIN IMMEDIATE`, so concurrent writers queue on the busy timeout instead of
    /// failing when a deferred transaction tries to upgrade its read lock.
    async fn open(
        &self,
        identity: &Identity,
        read_only: bool,
        revocation_ids: Option<&[String]>,
    ) -> ApiResult<Option<RequestTx>> {
        let ends = self.transaction_ends.clone();
        if self.backend() == DatabaseBackend::Postgres {
            let settings = Settings {
                read_only,
                revocation_ids,
                statement_timeout: self.statement_timeout,
            };
            let sql = opening(identity, &settings)?;
            let pool = self.conn.get_postgres_connection_pool();
            return match PgTx::begin(pool, sql, self.statements.clone()).await {
                Ok(tx) => Ok(Some(RequestTx::new(Tx::Postgres(tx), ends))),
                Err(err) if has_code(&err, SESSION_REFUSED) => {
                    // PgTx rolled it back, one round trip.
                    ends.fetch_add(1, Ordering::Relaxed);
                    Ok(None)
                }
                Err(err) => Err(err.into()),
            };
        }
        let options = TransactionOptions {
            sqlite_transaction_mode: (!read_only).then_some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        let tx = self.conn.begin_with_options(options).await?;
        ends.fetch_add(1, Ordering::Relaxed);
        let tx = RequestTx::new(Tx::Sqlite(tx), ends);
        if let Some(ids) = revocation_ids
            && !session_is_current(tx.conn(), identity, ids).await?
        {
            // Nothing was written; a failed rollback only means the connection is gone.
            let _ = tx.finish(false).await;
            return Ok(None);
        }
        Ok(Some(tx))
    }
}

/// The SQLSTATE with which `flashfusion_act_as_or_refuse` (migration
/// m20261126_000012) refuses a session that may no longer act.
const SESSION_REFUSED: &str = "ZF001";

/// The database's own error in `err`, if it is one.
fn database_error(err: &DbErr) -> Option<&dyn DatabaseError> {
    let (DbErr::Exec(RuntimeErr::SqlxError(err))
    | DbErr::Query(RuntimeErr::SqlxError(err))
    | DbErr::Conn(RuntimeErr::SqlxError(err))) = err
    else {
        return None;
    };
    err.as_database_error()
}

/// Whether `err` is the database's error with SQLSTATE `code`.
fn has_code(err: &DbErr, code: &str) -> bool {
    database_error(err).and_then(DatabaseError::code).as_deref() == Some(code)
}

/// Whether `err` says the function or table does not exist (Postgres `42883`
/// undefined_function, `42P01` undefined_table; SQLite "no such table").
fn is_undefined(err: &DbErr) -> bool {
    has_code(err, "42883")
        || has_code(err, "42P01")
        || database_error(err).is_some_and(|db| db.message().starts_with("no such table"))
}

/// What the opening query sets besides the identity.
struct Settings<'a> {
    /// Make the transaction read-only.
    read_only: bool,
    /// Check that the session holding these is current.
    revocation_ids: Option<&'a [String]>,
    /// Set `statement_timeout` for the rest of the transaction.
    statement_timeout: Option<Duration>,
}

/// The Postgres role, `app.user_id` and `app.role` of `identity`.
fn database_identity(identity: &Identity) -> (&'static str, String, &'static str) {
    let (pg_role, app_role) = match identity.role() {
        None => (roles::ANON, "anon"),
        Some(Role::User) => (roles::AUTHENTICATED, "user"),
        Some(Role::Admin) => (roles::AUTHENTICATED, "admin"),
        Some(Role::Service) => (roles::SERVICE, "service"),
    };
    let user_id = identity
        .user_id()
        .map(|id| id.to_string())
        .unwrap_or_default();
    (pg_role, user_id, app_role)
}

/// The simple query that opens a Postgres transaction as `identity`: `BEGIN`, then
/// `flashfusion_act_as_or_refuse` (migration m20261126_000012; the switch for this
/// transaction only, and the session check, as the caller, when there are revocation
/// ids) and `set_config('statement_timeout', .., true)` beside it when one is given.
/// A simple query binds no parameters: every value is inlined by [`literal`].
fn opening(identity: &Identity, settings: &Settings<'_>) -> ApiResult<String> {
    let (pg_role, user_id, app_role) = database_identity(identity);
    let quote =
        |text: &str| literal(text).ok_or_else(|| ApiError::bug("a NUL in the opening query"));
    let ids = match settings.revocation_ids {
        Some(ids) => format!(
            "{}::jsonb",
            quote(&serde_json::Value::from(ids).to_string())?
        ),
        None => "null".to_owned(),
    };
    let mut sql = format!(
        "BEGIN; SELECT flashfusion_act_as_or_refuse({}, {}, {}, {}, {ids})",
        quote(pg_role)?,
        quote(&user_id)?,
        quote(app_role)?,
        settings.read_only,
    );
    if let Some(limit) = settings.statement_timeout {
        // `set_config` with `is_local` lasts until the transaction ends, like the
        // role; a timeout of 0 would mean none, so it is at least 1 ms.
        let ms = limit.as_millis().clamp(1, i32::MAX as u128).to_string();
        sql.push_str(&format!(
            ", set_config('statement_timeout', {}, true)",
            quote(&ms)?
        ));
    }
    Ok(sql)
}

/// Switches the role and `app.*` settings of the open transaction `tx` to `identity`
/// for the rest of the transaction (`flashfusion_act_as`, migration m20261126_000010).
async fn act_as(tx: &Tx, identity: &Identity) -> ApiResult<()> {
    let (pg_role, user_id, app_role) = database_identity(identity);
    tx.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "select flashfusion_act_as($1, $2, $3, false, null)",
        [pg_role.into(), user_id.into(), app_role.into()],
    ))
    .await?;
    Ok(())
}

/// Whether the session of `identity` holding `revocation_ids` may still act, in one
/// statement on the open SQLite transaction (on Postgres `flashfusion_act_as` checks
/// the same as it opens the transaction): none of the ids revoked, the account exists,
/// and an admin token's account is still an admin (a demoted admin's tokens stop
/// working at once instead of at their expiry).
async fn session_is_current(
    db: &impl ConnectionTrait,
    identity: &Identity,
    revocation_ids: &[String],
) -> ApiResult<bool> {
    let Some(user_id) = identity.user_id() else {
        // A token that names no account is not a session.
        return Ok(false);
    };
    let revoked = revoked_tokens::Entity::find()
        .select_only()
        .column(revoked_tokens::Column::RevocationId)
        .filter(revoked_tokens::Column::RevocationId.is_in(revocation_ids.iter().cloned()))
        .into_query();
    let mut account = users::Entity::find()
        .select_only()
        .column(users::Column::Id)
        .filter(users::Column::Id.eq(user_id));
    if identity.is_admin() {
        account = account.filter(users::Column::Role.eq(users::UserRole::Admin));
    }
    let current = Expr::exists(revoked)
        .not()
        .and(Expr::exists(account.into_query()));
    let statement = db
        .get_database_backend()
        .build(&Query::select().expr(current).to_owned());
    let row = db
        .query_one_raw(statement)
        .await?
        .ok_or_else(|| ApiError::bug("the session check returned no row"))?;
    Ok(row.try_get_by_index(0)?)
}

/// An open request transaction: on Postgres a [`PgTx`] (opened by the query that
/// switches to the caller), on SQLite sea-orm's own. Statements run on it through
/// [`ConnectionTrait`], like on any sea-orm connection.
pub enum Tx {
    /// Opened by `BEGIN; SELECT flashfusion_act_as_or_refuse(..)` in one query.
    Postgres(PgTx),
    /// sea-orm's, opened by its own `BEGIN` (`BEGIN IMMEDIATE` for writers).
    Sqlite(DatabaseTransaction),
}

impl Tx {
    /// Commits when `success`, rolls back otherwise.
    async fn end(self, success: bool) -> Result<(), DbErr> {
        match (self, success) {
            (Self::Postgres(tx), true) => tx.commit().await,
            (Self::Postgres(tx), false) => tx.rollback().await,
            (Self::Sqlite(tx), true) => tx.commit().await,
            (Self::Sqlite(tx), false) => tx.rollback().await,
        }
    }
}

/// `$call` on whichever transaction `$tx` holds (`ConnectionTrait` has generic methods,
/// so it cannot be a trait object).
macro_rules! on_either {
    ($tx:expr, $inner:ident => $call:expr) => {
        match $tx {
            Tx::Postgres($inner) => $call,
            Tx::Sqlite($inner) => $call,
        }
    };
}

#[async_trait::async_trait]
impl ConnectionTrait for Tx {
    fn get_database_backend(&self) -> DatabaseBackend {
        on_either!(self, tx => tx.get_database_backend())
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        on_either!(self, tx => tx.execute_raw(statement).await)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        on_either!(self, tx => tx.execute_unprepared(sql).await)
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        on_either!(self, tx => tx.query_one_raw(statement).await)
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        on_either!(self, tx => tx.query_all_raw(statement).await)
    }
}

/// The transaction of one GraphQL operation. The pipeline owns the only strong
/// reference; resolvers and DataLoaders get a [`TxRef`], so nothing can keep the
/// transaction alive past the response and `finish` can always commit.
pub struct RequestTx {
    tx: Arc<Tx>,
    /// [`Database::round_trips`]' count of transaction ends.
    transaction_ends: Arc<AtomicU64>,
}

impl RequestTx {
    /// Wraps a transaction that has just opened.
    fn new(tx: Tx, transaction_ends: Arc<AtomicU64>) -> Self {
        Self {
            tx: Arc::new(tx),
            transaction_ends,
        }
    }

    /// A weak handle for the request's data.
    pub fn handle(&self) -> TxRef {
        TxRef {
            slot: Arc::new(Mutex::new(Arc::downgrade(&self.tx))),
            pending: None,
            is_postgres: self.is_postgres(),
        }
    }

    fn is_postgres(&self) -> bool {
        matches!(*self.tx, Tx::Postgres(_))
    }

    /// The transaction, for the pipeline's own statements.
    pub fn conn(&self) -> &Tx {
        &self.tx
    }

    /// Commits when `success`, rolls back otherwise.
    pub async fn finish(self, success: bool) -> ApiResult<()> {
        Ok(self.ending()?.end(success).await?)
    }

    /// [`RequestTx::finish`] for a read-only transaction, without waiting: how it ends
    /// cannot change what it read, so the response need not wait for its end. Its
    /// connection goes back to the pool once the transaction has ended, so the next
    /// request on it starts clean.
    ///
    /// On Postgres the end costs no round trip of its own ([`PgTx::end_on_release`]):
    /// `ROLLBACK`, which ends a read-only transaction as `COMMIT` would, rides with the
    /// check sqlx makes as the connection goes back. On SQLite the end is spawned; a
    /// failure is logged, and one that takes longer than `limit` is dropped, as a
    /// cancelled request's would be.
    pub fn finish_read_only(self, success: bool, limit: Duration) {
        match self.ending() {
            Ok(Tx::Postgres(tx)) => tx.end_on_release(),
            Ok(tx) => {
                tokio::spawn(async move {
                    match tokio::time::timeout(limit, tx.end(success)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => {
                            tracing::warn!(error = %err, "a read-only transaction failed to end");
                        }
                        Err(_) => tracing::warn!("a read-only transaction took too long to end"),
                    }
                });
            }
            Err(err) => tracing::error!(error = ?err, "a read-only transaction could not end"),
        }
    }

    /// The transaction, alone now, counted as ended.
    fn ending(self) -> ApiResult<Tx> {
        let tx = Arc::try_unwrap(self.tx)
            .map_err(|_| ApiError::bug("the request transaction outlived its operation"))?;
        self.transaction_ends.fetch_add(1, Ordering::Relaxed);
        Ok(tx)
    }
}

/// What resolvers hold: a weak reference to the operation's transaction. Clones share
/// one slot, so a subscription can point its resolvers and loaders at each delivery's
/// own short transaction ([`TxRef::rebind`]). A handle from [`PendingTx::handle`]
/// opens the operation's transaction the first time any of them needs it.
#[derive(Clone)]
pub struct TxRef {
    slot: Slot,
    pending: Option<Arc<PendingTx>>,
    is_postgres: bool,
}

/// Where a [`TxRef`] and its clones find the transaction.
type Slot = Arc<Mutex<Weak<Tx>>>;

impl TxRef {
    /// The live transaction, opened now if it is the operation's first use of it; fails
    /// if opening does (a refused session, say) or if used after the operation ended.
    pub async fn get(&self) -> ApiResult<Arc<Tx>> {
        if let Some(tx) = self.current() {
            return Ok(tx);
        }
        if let Some(pending) = &self.pending {
            pending.open().await?;
            if let Some(tx) = self.current() {
                return Ok(tx);
            }
        }
        Err(ApiError::bug("transaction used after its operation"))
    }

    fn current(&self) -> Option<Arc<Tx>> {
        self.slot.lock().ok().and_then(|tx| tx.upgrade())
    }

    /// Points this handle and all its clones at `tx` from now on.
    pub fn rebind(&self, tx: &RequestTx) {
        bind(&self.slot, tx);
    }

    /// Runs the rest of this transaction as `identity` (Postgres), e.g. the gateway's
    /// own service identity for sign-up and sign-in, which must read `users` before
    /// anyone is signed in.
    pub async fn act_as(&self, identity: &Identity) -> ApiResult<()> {
        if self.is_postgres {
            act_as(&*self.get().await?, identity).await?;
        }
        Ok(())
    }
}

fn bind(slot: &Slot, tx: &RequestTx) {
    if let Ok(mut slot) = slot.lock() {
        *slot = Arc::downgrade(&tx.tx);
    }
}

/// How an operation's transaction is opened (as its caller, checking its session).
pub type Opening = BoxFuture<'static, ApiResult<RequestTx>>;

/// An operation's transaction before anything has used it. It opens when a resolver
/// or loader first asks its handle for it, which async-graphql lets happen only once the
/// document has passed validation, so an operation refused by validation (its cost,
/// say) does no database work, and needs no schema extension to know when validation
/// has passed (an extension costs every field of every operation: BENCHMARKS.md,
/// "No schema extension"). Resolvers running side by side wait for one opening.
pub struct PendingTx {
    opening: Mutex<Option<Opening>>,
    /// Whether opening succeeded, once it has run: what concurrent first users share.
    outcome: tokio::sync::OnceCell<ApiResult<()>>,
    opened: Mutex<Option<ApiResult<RequestTx>>>,
    slot: Slot,
    is_postgres: bool,
}

impl PendingTx {
    /// A transaction `opening` will open on first use by a handle of
    /// [`PendingTx::handle`]; `db` says which backend.
    pub fn new(opening: Opening, db: &Database) -> Arc<Self> {
        Arc::new(Self {
            opening: Mutex::new(Some(opening)),
            outcome: tokio::sync::OnceCell::new(),
            opened: Mutex::new(None),
            slot: Slot::default(),
            is_postgres: db.backend() == DatabaseBackend::Postgres,
        })
    }

    /// Opens the transaction unless it has been (once, whoever asks first) and binds
    /// the handles to it; what opening gave is kept for [`PendingTx::take`].
    pub async fn open(&self) -> ApiResult<()> {
        self.outcome
            .get_or_init(|| async {
                let opening = self
                    .opening
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .take();
                let Some(opening) = opening else {
                    return Err(ApiError::bug(
                        "an operation's transaction was opened after it was taken",
                    ));
                };
                let opened = opening.await;
                let outcome = match &opened {
                    Ok(tx) => {
                        bind(&self.slot, tx);
                        Ok(())
                    }
                    Err(err) => Err(err.clone()),
                };
                *self.opened.lock().unwrap_or_else(PoisonError::into_inner) = Some(opened);
                outcome
            })
            .await
            .clone()
    }

    /// The handle for the operation's resolvers and loaders.
    pub fn handle(self: &Arc<Self>) -> TxRef {
        TxRef {
            slot: self.slot.clone(),
            pending: Some(self.clone()),
            is_postgres: self.is_postgres,
        }
    }

    /// What opening gave, taken: `None` when nothing asked for the transaction (the
    /// operation was refused by validation, or needed no database).
    pub fn take(&self) -> Option<ApiResult<RequestTx>> {
        self.opened
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

/// Builds an identity-less id for rows created by the gateway.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}

#[cfg(test)]
mod tests {
    use super::without_password;

    #[test]
    fn a_database_url_s_password_is_masked_wherever_it_appears() {
        let masked = |url: &str| without_password(&format!("bad url `{url}`"), url);
        assert_eq!(
            masked("postgress://app:hunter2@db:5432/ff"),
            "bad url `postgress://app:***@db:5432/ff`"
        );
        // Unencoded, so the URL does not parse: found whole all the same.
        assert_eq!(
            masked("postgres://app:pa/ss@w@db/ff"),
            "bad url `postgres://app:***@db/ff`"
        );
        assert_eq!(
            masked("sqlite://data/ff.db?mode=rwc"),
            "bad url `sqlite://data/ff.db?mode=rwc`"
        );
        assert_eq!(
            masked("postgres://app@db/ff"),
            "bad url `postgres://app@db/ff`"
        );
    }
}
