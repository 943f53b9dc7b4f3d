//! The run's own Postgres database: created on the server named by `TEST_DATABASE_URL`
//! (or the local default) with the process id in its name, migrated, and dropped at the
//! end, also when the run failed or was interrupted ([`BenchDb::scoped`]).

use anyhow::{Context as _, bail};
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

    /// The server's `host:port`, as the URL names it (5432 when it names no port).
    pub fn server_address(&self) -> anyhow::Result<String> {
        let (_, host_port, _) = split_authority(&self.url)?;
        let host_port = host_port
            .split_once('@')
            .map_or(host_port, |(_, host_port)| host_port);
        if host_port.is_empty() {
            bail!("the database URL names no host (a Unix socket cannot be proxied)");
        }
        Ok(
            if host_port
                .rsplit_once(':')
                .is_some_and(|(_, port)| !port.contains(']'))
            {
                host_port.to_owned()
            } else {
                format!("{host_port}:5432")
            },
        )
    }

    /// Our database's URL with the server at `address` instead, without TLS (so a
    /// proxy there can read the protocol).
    pub fn url_via(&self, address: &str) -> anyhow::Result<String> {
        let (scheme, authority, rest) = split_authority(&self.url)?;
        let user = authority
            .split_once('@')
            .map(|(user, _)| format!("{user}@"))
            .unwrap_or_default();
        let separator = if rest.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{scheme}{user}{address}{rest}{separator}sslmode=disable"
        ))
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

/// `postgres://user@host:port/db?x` as (`postgres://`, `user@host:port`, `/db?x`).
fn split_authority(url: &str) -> anyhow::Result<(&str, &str, &str)> {
    let after_scheme = url.find("://").context("the database URL has no scheme")? + 3;
    let (scheme, rest) = url.split_at(after_scheme);
    let end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, rest) = rest.split_at(end);
    Ok((scheme, authority, rest))
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
