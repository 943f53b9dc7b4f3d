//! The run's own Postgres database: created on the server named by `TEST_DATABASE_URL`
//! (or the local default) with the process id in its name, migrated, and dropped at the
//! end, also when the run failed or was interrupted ([`BenchDb::scoped`]).

use anyhow::Context as _;
use migration::MigratorTrait as _;
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// A migrated database that exists until [`BenchDb::drop`].
pub struct BenchDb {
    /// A connection to the server's maintenance database, to drop ours at the end.
    server: DatabaseConnection,
    /// A superuser connection to our database, for set-up the API does not offer.
    pub conn: DatabaseConnection,
    name: String,
    /// The URL the gateway connects with.
    pub url: String,
}

impl BenchDb {
    /// Runs `run` on a fresh database and drops the database afterwards, also when `run`
    /// failed or Ctrl-C interrupted it (which drops `run` and so kills its gateway).
    pub async fn scoped<T>(run: impl AsyncFnOnce(&Self) -> anyhow::Result<T>) -> anyhow::Result<T> {
        let db = Self::create().await?;
        let outcome = tokio::select! {
            outcome = run(&db) => outcome,
            _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
        };
        let dropped = db.drop().await;
        let value = outcome?;
        dropped?;
        Ok(value)
    }

    /// Creates and migrates a fresh database.
    async fn create() -> anyhow::Result<Self> {
        let server_url = std::env::var("TEST_DATABASE_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned());
        let server = Database::connect(server_url.as_str())
            .await
            .with_context(|| format!("cannot reach PostgreSQL at {server_url}"))?;
        let name = format!("flashfusion_bench_{}", std::process::id());
        server
            .execute_unprepared(&format!("drop database if exists {name} with (force)"))
            .await?;
        server
            .execute_unprepared(&format!("create database {name}"))
            .await
            .with_context(|| format!("cannot create database {name}"))?;
        let url = with_database(&server_url, &name);
        let conn = Database::connect(url.as_str()).await?;
        migration::Migrator::up(&conn, None)
            .await
            .context("migrating the benchmark database")?;
        Ok(Self {
            server,
            conn,
            name,
            url,
        })
    }

    /// The server's version string.
    pub async fn server_version(&self) -> anyhow::Result<String> {
        let row = self
            .conn
            .query_one_raw(Statement::from_string(
                self.conn.get_database_backend(),
                "select version() as v",
            ))
            .await?
            .context("no version row")?;
        Ok(row.try_get::<String>("", "v")?)
    }

    /// Drops the database, disconnecting whoever is still on it.
    async fn drop(self) -> anyhow::Result<()> {
        let _ = self.conn.close().await;
        self.server
            .execute_unprepared(&format!(
                "drop database if exists {} with (force)",
                self.name
            ))
            .await
            .with_context(|| format!("cannot drop database {}", self.name))?;
        Ok(())
    }
}

/// Replaces the database name at the end of a Postgres URL.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(server, _)| server);
    match query {
        Some(q) => format!("{base}/{name}?{q}"),
        None => format!("{base}/{name}"),
    }
}
