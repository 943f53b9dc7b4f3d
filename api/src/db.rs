//! The database handle and the per-request transaction that makes RLS apply.
//!
//! [`Database::begin`] is the only way request code reaches the database: it opens one
//! transaction and, on Postgres, first switches the role and the `app.*` settings with
//! `set_config(..., true)` so the policies of the `migration` crate judge every
//! statement exactly as the resolvers do. This module must never hand out the bare pool
//! to request code.

use std::sync::{
    Arc, Mutex, Weak,
    atomic::{AtomicU64, Ordering},
};

use anyhow::Context as _;
use migration::{Migrator, MigratorTrait, roles};
use sea_orm::{
    AccessMode, ConnectOptions, ConnectionTrait, DatabaseBackend, DatabaseConnection,
    DatabaseTransaction, SqliteTransactionMode, Statement, TransactionOptions, TransactionTrait,
};
use uuid::Uuid;

use crate::{
    auth::{Identity, Role},
    error::{ApiError, ApiResult},
};

/// A connection pool plus which backend it speaks to.
#[derive(Debug, Clone)]
pub struct Database {
    conn: DatabaseConnection,
    /// SQL statements run so far (BEGIN/COMMIT excluded), for metrics and for tests
    /// that prove nested fields are batched.
    statements: Arc<AtomicU64>,
}

impl Database {
    /// Connects to `url` with at most `max_connections` pooled connections.
    pub async fn connect(url: &str, max_connections: u32) -> anyhow::Result<Self> {
        let mut options = ConnectOptions::new(url.to_owned());
        // A request waits at most this long for a pooled connection; beyond it the
        // database is treated as unavailable (503) rather than holding the request.
        options
            .max_connections(max_connections)
            .acquire_timeout(std::time::Duration::from_secs(5))
            .sqlx_logging(false);
        let mut conn = sea_orm::Database::connect(options)
            .await
            .context("cannot connect to the database (check DATABASE_URL)")?;
        let statements = Arc::new(AtomicU64::new(0));
        let counter = statements.clone();
        conn.set_metric_callback(move |_| {
            counter.fetch_add(1, Ordering::Relaxed);
        });
        Ok(Self { conn, statements })
    }

    /// How many SQL statements this pool has run.
    pub fn statements_executed(&self) -> u64 {
        self.statements.load(Ordering::Relaxed)
    }

    /// Applies every pending migration.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        Migrator::up(&self.conn, None)
            .await
            .context("database migration failed")
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

    /// Opens a transaction acting as `identity`. On Postgres the transaction is
    /// read-only when `read_only` is set, and its role and settings are switched before
    /// anything else runs. On SQLite a writing transaction takes the write lock at
    /// `BEGIN IMMEDIATE`, so concurrent writers queue on the busy timeout instead of
    /// failing when a deferred transaction tries to upgrade its read lock.
    pub async fn begin(&self, identity: &Identity, read_only: bool) -> ApiResult<RequestTx> {
        let is_postgres = self.backend() == DatabaseBackend::Postgres;
        let options = if is_postgres {
            TransactionOptions {
                access_mode: read_only.then_some(AccessMode::ReadOnly),
                ..TransactionOptions::default()
            }
        } else {
            TransactionOptions {
                sqlite_transaction_mode: (!read_only).then_some(SqliteTransactionMode::Immediate),
                ..TransactionOptions::default()
            }
        };
        let tx = self.conn.begin_with_options(options).await?;
        if is_postgres {
            act_as(&tx, identity).await?;
        }
        Ok(RequestTx {
            tx: Arc::new(tx),
            is_postgres,
        })
    }
}

/// Switches the role and `app.*` settings of `tx` to `identity`, for this transaction
/// only (`set_config(.., true)` is `SET LOCAL`).
async fn act_as(tx: &DatabaseTransaction, identity: &Identity) -> ApiResult<()> {
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
    tx.execute_raw(Statement::from_sql_and_values(
        DatabaseBackend::Postgres,
        "select set_config('role', $1, true), set_config('app.user_id', $2, true), \
         set_config('app.role', $3, true)",
        [pg_role.into(), user_id.into(), app_role.into()],
    ))
    .await?;
    Ok(())
}

/// The transaction of one GraphQL operation. The pipeline owns the only strong
/// reference; resolvers and DataLoaders get a [`TxRef`], so nothing can keep the
/// transaction alive past the response and `finish` can always commit.
pub struct RequestTx {
    tx: Arc<DatabaseTransaction>,
    is_postgres: bool,
}

impl RequestTx {
    /// A weak handle for the request's data.
    pub fn handle(&self) -> TxRef {
        TxRef {
            slot: Arc::new(Mutex::new(Arc::downgrade(&self.tx))),
            is_postgres: self.is_postgres,
        }
    }

    /// The transaction, for the pipeline's own statements.
    pub fn conn(&self) -> &DatabaseTransaction {
        &self.tx
    }

    /// Commits when `success`, rolls back otherwise.
    pub async fn finish(self, success: bool) -> ApiResult<()> {
        let tx = Arc::try_unwrap(self.tx)
            .map_err(|_| ApiError::bug("the request transaction outlived its operation"))?;
        if success {
            tx.commit().await?;
        } else {
            tx.rollback().await?;
        }
        Ok(())
    }
}

/// What resolvers hold: a weak reference to the operation's transaction. Clones share
/// one slot, so a subscription can point its resolvers and loaders at each delivery's
/// own short transaction ([`TxRef::rebind`]).
#[derive(Clone)]
pub struct TxRef {
    slot: Arc<Mutex<Weak<DatabaseTransaction>>>,
    is_postgres: bool,
}

impl TxRef {
    /// The live transaction; fails only if used after the operation ended.
    pub fn get(&self) -> ApiResult<Arc<DatabaseTransaction>> {
        self.slot
            .lock()
            .ok()
            .and_then(|tx| tx.upgrade())
            .ok_or_else(|| ApiError::bug("transaction used after its operation"))
    }

    /// Points this handle and all its clones at `tx` from now on.
    pub fn rebind(&self, tx: &RequestTx) {
        if let Ok(mut slot) = self.slot.lock() {
            *slot = Arc::downgrade(&tx.tx);
        }
    }

    /// Runs the rest of this transaction as `identity` (Postgres), e.g. the gateway's
    /// own service identity for sign-up and sign-in, which must read `users` before
    /// anyone is signed in.
    pub async fn act_as(&self, identity: &Identity) -> ApiResult<()> {
        if self.is_postgres {
            act_as(&*self.get()?, identity).await?;
        }
        Ok(())
    }
}

/// Builds an identity-less id for rows created by the gateway.
pub fn new_id() -> Uuid {
    Uuid::now_v7()
}
