//! A Postgres transaction opened by one simple query that carries more than `BEGIN`.
//!
//! sea-orm opens a transaction with a `BEGIN` of its own and no way to add to it, so the
//! statement that switches to the caller would cost a round trip of its own. [`PgTx`]
//! takes a connection from the pool sea-orm holds and opens the transaction with sqlx's
//! `TransactionManager::begin` and a custom statement (`BEGIN; SELECT ..`, sent as one
//! simple query: one round trip; sqlx reads no row of it, only whether it failed), then
//! runs sea-orm's statements on it as sea-orm's own `DatabaseTransaction` would
//! (`sqlx::query_with` and sea-query's values: prepared, cached per connection).
//!
//! A simple query binds no parameters, so what goes into the opening statement is
//! inlined with [`literal`], the one quoting function.
//!
//! Ending: [`PgTx::commit`] / [`PgTx::rollback`], a round trip each; or
//! [`PgTx::end_on_release`], none of its own; dropped unfinished (a cancelled
//! operation), sqlx queues a `ROLLBACK` that runs before the connection is reused. An
//! opening that fails is rolled back before the connection goes back to the pool; one
//! that is cancelled or cannot be rolled back closes the connection instead.

use std::sync::{
    Arc,
    atomic::{AtomicU64, Ordering},
};

use sea_orm::{
    ConnAcquireErr, ConnectionTrait, DbBackend, DbErr, ExecResult, QueryResult, RuntimeErr,
    Statement,
    sea_query::Values,
    sqlx::{
        self, AssertSqlSafe, PgPool, Postgres, SqlSafeStr as _, pool::PoolConnection,
        postgres::PgTransactionManager,
    },
};
use sea_query_sqlx::SqlxValues;
use sqlx_core::transaction::TransactionManager as _;
use tokio::sync::Mutex;

/// An open Postgres transaction on a pooled connection.
pub struct PgTx {
    conn: Mutex<PoolConnection<Postgres>>,
    /// The pool's count of statements ([`super::Database::statements_executed`]).
    statements: Arc<AtomicU64>,
    /// Whether sqlx knows the connection's transaction state. It does not while the
    /// opening query is in flight (sqlx counts a transaction as begun only once the
    /// whole query succeeded), so an opening dropped then closes the connection.
    settled: bool,
}

impl PgTx {
    /// Takes a connection from `pool` and sends `opening`, a simple query that begins
    /// with `BEGIN`; the statements after it run in the transaction. Counted as one
    /// statement in `statements` (the `BEGIN` is not). When `opening` fails, its error
    /// is returned once the transaction it may have begun is rolled back.
    pub async fn begin(
        pool: &PgPool,
        opening: String,
        statements: Arc<AtomicU64>,
    ) -> Result<Self, DbErr> {
        let conn = pool.acquire().await.map_err(acquire_err)?;
        let mut tx = Self {
            conn: Mutex::new(conn),
            statements,
            settled: false,
        };
        tx.statements.fetch_add(1, Ordering::Relaxed);
        let conn = tx.conn.get_mut();
        let begun =
            PgTransactionManager::begin(conn, Some(AssertSqlSafe(opening).into_sql_str())).await;
        // A `BEGIN` followed by a failed statement leaves the server in an aborted
        // transaction that sqlx does not know of: end it (with none open, `ROLLBACK` is
        // only a warning). If that fails too, the connection is closed on drop.
        tx.settled = match &begun {
            Ok(()) => true,
            Err(_) => sqlx::raw_sql("ROLLBACK").execute(&mut **conn).await.is_ok(),
        };
        begun.map_err(query_err)?;
        Ok(tx)
    }

    /// Commits.
    pub async fn commit(mut self) -> Result<(), DbErr> {
        PgTransactionManager::commit(self.conn.get_mut())
            .await
            .map_err(query_err)
    }

    /// Rolls back.
    pub async fn rollback(mut self) -> Result<(), DbErr> {
        PgTransactionManager::rollback(self.conn.get_mut())
            .await
            .map_err(query_err)
    }

    /// Ends the transaction with `ROLLBACK` in no round trip of its own, for a read-only
    /// transaction, which `ROLLBACK` ends as `COMMIT` would: sqlx queues it, and the
    /// connection's trip back to the pool sends it in one write with the `Sync` that
    /// checks the connection (`PoolConnection`'s drop, sqlx-core 0.9
    /// `pool/connection.rs`), then waits for both answers; one that fails closes the
    /// connection instead. The one cost: the server counts a rollback
    /// (`pg_stat_database.xact_rollback`) where it counted a commit.
    pub fn end_on_release(self) {
        drop(self);
    }

    /// The connection, once the statement is counted.
    async fn counted(&self) -> tokio::sync::MutexGuard<'_, PoolConnection<Postgres>> {
        let conn = self.conn.lock().await;
        self.statements.fetch_add(1, Ordering::Relaxed);
        conn
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        let conn = self.conn.get_mut();
        if self.settled {
            // Queues `ROLLBACK` if the transaction is still open; sent before the
            // connection's next use, its check on return to the pool included.
            PgTransactionManager::start_rollback(conn);
        } else {
            conn.close_on_drop();
        }
    }
}

// sqlx's errors as sea-orm's own `DatabaseTransaction` reports them (its conversions
// are private), so callers match them alike.

fn exec_err(err: sqlx::Error) -> DbErr {
    DbErr::Exec(RuntimeErr::SqlxError(err.into()))
}

fn query_err(err: sqlx::Error) -> DbErr {
    DbErr::Query(RuntimeErr::SqlxError(err.into()))
}

fn acquire_err(err: sqlx::Error) -> DbErr {
    match err {
        sqlx::Error::PoolTimedOut => DbErr::ConnectionAcquire(ConnAcquireErr::Timeout),
        sqlx::Error::PoolClosed => DbErr::ConnectionAcquire(ConnAcquireErr::ConnectionClosed),
        _ => DbErr::Conn(RuntimeErr::SqlxError(err.into())),
    }
}

/// `statement` as sqlx runs it: its values bound as parameters, prepared and cached.
fn query(statement: Statement) -> sqlx::query::Query<'static, Postgres, SqlxValues> {
    let Statement { sql, values, .. } = statement;
    sqlx::query_with(
        AssertSqlSafe(sql),
        SqlxValues(values.unwrap_or(Values(Vec::new()))),
    )
}

#[async_trait::async_trait]
impl ConnectionTrait for PgTx {
    fn get_database_backend(&self) -> DbBackend {
        DbBackend::Postgres
    }

    async fn execute_raw(&self, statement: Statement) -> Result<ExecResult, DbErr> {
        let mut conn = self.counted().await;
        query(statement)
            .execute(&mut **conn)
            .await
            .map(Into::into)
            .map_err(exec_err)
    }

    async fn execute_unprepared(&self, sql: &str) -> Result<ExecResult, DbErr> {
        let mut conn = self.counted().await;
        sqlx::raw_sql(AssertSqlSafe(sql.to_owned()))
            .execute(&mut **conn)
            .await
            .map(Into::into)
            .map_err(exec_err)
    }

    async fn query_one_raw(&self, statement: Statement) -> Result<Option<QueryResult>, DbErr> {
        let mut conn = self.counted().await;
        match query(statement).fetch_one(&mut **conn).await {
            Ok(row) => Ok(Some(row.into())),
            Err(sqlx::Error::RowNotFound) => Ok(None),
            Err(err) => Err(query_err(err)),
        }
    }

    async fn query_all_raw(&self, statement: Statement) -> Result<Vec<QueryResult>, DbErr> {
        let mut conn = self.counted().await;
        query(statement)
            .fetch_all(&mut **conn)
            .await
            .map(|rows| rows.into_iter().map(Into::into).collect())
            .map_err(query_err)
    }
}

/// `text` as a Postgres string literal meaning exactly `text`, whatever
/// `standard_conforming_strings` is: an escape string (`E'..'`) with quotes and
/// backslashes doubled. `None` for text holding NUL, which Postgres text cannot hold
/// (and which would end a simple query's text early).
pub fn literal(text: &str) -> Option<String> {
    if text.contains('\0') {
        return None;
    }
    let mut quoted = String::with_capacity(text.len() + 3);
    quoted.push_str("E'");
    for c in text.chars() {
        if matches!(c, '\'' | '\\') {
            quoted.push(c);
        }
        quoted.push(c);
    }
    quoted.push('\'');
    Some(quoted)
}

#[cfg(test)]
mod tests {
    use super::literal;

    #[test]
    fn literals_double_quotes_and_backslashes_and_refuse_nul() {
        assert_eq!(literal("").as_deref(), Some("E''"));
        assert_eq!(
            literal("0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b").as_deref(),
            Some("E'0195a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b'")
        );
        assert_eq!(
            literal(r#"["ab01","cd"]"#).as_deref(),
            Some(r#"E'["ab01","cd"]'"#)
        );
        assert_eq!(
            literal(r"x'); drop table users; --\").as_deref(),
            Some(r"E'x''); drop table users; --\\'")
        );
        assert_eq!(literal("a\0b"), None);
    }
}
