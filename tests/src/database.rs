//! Fresh Postgres databases for tests: one template per test process, migrated once,
//! then `CREATE DATABASE .. TEMPLATE ..` per test (a database, not a schema, because
//! NOTIFY and roles' settings are per database), dropped when the test ends.

use std::sync::OnceLock;

use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use tokio::sync::OnceCell;
use uuid::Uuid;

use crate::cluster::{self, Cluster};

/// Where the tests find Postgres: `TEST_DATABASE_URL`, or the local default; once the
/// harness had to start a private cluster (see [`admin_connection`]), that cluster.
pub fn test_database_url() -> String {
    if let Some(cluster) = PRIVATE.get() {
        return cluster.url();
    }
    configured_url()
}

fn configured_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The private cluster the harness started because no server answered at the
/// configured URL; it lives as long as the test process (statics are never dropped, so
/// the next run's [`crate::cluster::remove_stale`] stops it).
static PRIVATE: OnceLock<Cluster> = OnceLock::new();

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

async fn admin_connection() -> DatabaseConnection {
    // Once Postgres was found unreachable, every later test fails at once instead of
    // waiting for it again.
    static UNREACHABLE: OnceLock<String> = OnceLock::new();
    if let Some(message) = UNREACHABLE.get() {
        panic!("{message}");
    }
    let url = test_database_url();
    let mut attempt = Database::connect(quick_options(&url)).await;
    if attempt.is_err() && PRIVATE.get().is_none() && start_local_cluster() {
        // The cluster was started just now: give it a bounded while to accept.
        for _ in 0..10 {
            attempt = Database::connect(quick_options(&url)).await;
            if attempt.is_ok() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    }
    if attempt.is_err() && PRIVATE.get().is_none() && Cluster::installed() {
        // Installed but not running (a laptop): a private cluster of this process.
        let private = tokio::task::spawn_blocking(|| {
            PRIVATE.get_or_init(|| {
                cluster::remove_stale();
                Cluster::start()
            });
        })
        .await;
        if private.is_ok() {
            attempt = Database::connect(quick_options(&test_database_url())).await;
        }
    }
    match attempt {
        Ok(conn) => conn,
        Err(err) => {
            let message = format!(
                "PostgreSQL is not reachable at {url} ({err}).\n\
                 The end-to-end tests need a real Postgres: start the local one with\n  \
                 pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start\n\
                 or point TEST_DATABASE_URL at a server where the user may CREATE DATABASE\n\
                 (with PostgreSQL installed, the harness starts a private cluster itself)."
            );
            panic!("{}", UNREACHABLE.get_or_init(|| message));
        }
    }
}

/// sqlx retries a refused connection until its acquire timeout (30 s by default): keep
/// each attempt short, so an unreachable server is reported quickly.
fn quick_options(url: &str) -> sea_orm::ConnectOptions {
    let mut options = sea_orm::ConnectOptions::new(url.to_owned());
    options
        .connect_timeout(std::time::Duration::from_secs(3))
        .acquire_timeout(std::time::Duration::from_secs(3))
        .sqlx_logging(false);
    options
}

/// Starts the machine's PostgreSQL cluster (Debian's `pg_ctlcluster`), once per run;
/// whether it was started.
fn start_local_cluster() -> bool {
    static STARTED: OnceLock<bool> = OnceLock::new();
    *STARTED.get_or_init(|| {
        let Some(version) = std::fs::read_dir("/etc/postgresql")
            .ok()
            .and_then(|mut dir| dir.next())
            .and_then(Result::ok)
            .map(|entry| entry.file_name())
        else {
            return false;
        };
        std::process::Command::new("pg_ctlcluster")
            .args(["--skip-systemctl-redirect"])
            .arg(version)
            .args(["main", "start"])
            .status()
            // Not when it was running already (on another port than the URL's).
            .is_ok_and(|status| status.success())
    })
}

async fn exec(conn: &DatabaseConnection, sql: &str) {
    if let Err(err) = conn.execute_unprepared(sql).await {
        panic!("test database setup failed on `{sql}`: {err}");
    }
}

/// The template of this test process, created and migrated on first use. Databases
/// left by earlier runs that died are dropped at that moment.
async fn template() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    static READY: OnceCell<()> = OnceCell::const_new();
    let name = NAME.get_or_init(|| format!("ff_tpl_{}", std::process::id()));
    READY
        .get_or_init(|| async {
            // Runs on a runtime of its own: the first test's runtime ends with that test.
            let name = name.clone();
            std::thread::spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a runtime for the template");
                runtime.block_on(async {
                    let admin = admin_connection().await;
                    drop_stale_databases(&admin).await;
                    exec(
                        &admin,
                        &format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
                    )
                    .await;
                    exec(&admin, &format!("CREATE DATABASE {name}")).await;
                    let template = Database::connect(with_database(&test_database_url(), &name))
                        .await
                        .expect("connect to the template database");
                    Migrator::up(&template, None)
                        .await
                        .expect("migrate the template database");
                    template
                        .close()
                        .await
                        .expect("close the template connection");
                    admin.close().await.expect("close the admin connection");
                });
            })
            .join()
            .expect("template set-up panicked");
        })
        .await;
    name
}

/// Drops `ff_tpl_<pid>` / `ff_test_<pid>_*` databases whose process is gone.
async fn drop_stale_databases(admin: &DatabaseConnection) {
    let rows = admin
        .query_all_raw(sea_orm::Statement::from_string(
            admin.get_database_backend(),
            "SELECT datname FROM pg_database WHERE datname LIKE 'ff\\_tpl\\_%' OR datname LIKE 'ff\\_test\\_%'",
        ))
        .await
        .unwrap_or_default();
    for row in rows {
        let Ok(name) = row.try_get::<String>("", "datname") else {
            continue;
        };
        let pid = name.split('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|pid| std::path::Path::new(&format!("/proc/{pid}")).exists());
        if !alive {
            let _ = admin
                .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .await;
        }
    }
}

/// A fresh, migrated database of its own; dropped when this value is.
pub struct TestDb {
    name: String,
    url: String,
}

impl TestDb {
    /// Clones the template into a new database.
    pub async fn new() -> Self {
        let template = template().await;
        let name = format!("ff_test_{}_{}", std::process::id(), Uuid::new_v4().simple());
        let admin = admin_connection().await;
        exec(
            &admin,
            &format!("CREATE DATABASE {name} TEMPLATE {template}"),
        )
        .await;
        let _ = admin.close().await;
        let url = with_database(&test_database_url(), &name);
        Self { name, url }
    }

    /// Its URL, connecting as the superuser (policies apply only after the role switch).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Its URL for another login role (trust authentication, as on the test cluster).
    pub fn url_as(&self, user: &str) -> String {
        let url = with_database(&test_database_url(), &self.name);
        match url.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{user}@{host}")
            }
            None => url,
        }
    }

    /// Drops the database now, terminating every connection to it (an outage).
    pub async fn destroy(&self) {
        let admin = admin_connection().await;
        exec(
            &admin,
            &format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name),
        )
        .await;
        let _ = admin.close().await;
    }

    /// A direct connection, for assertions in SQL.
    pub async fn connect(&self) -> DatabaseConnection {
        Database::connect(self.url.as_str())
            .await
            .expect("connect to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop is synchronous and may run inside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async {
                if let Ok(admin) = Database::connect(test_database_url().as_str()).await {
                    let _ = admin
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .await;
                    let _ = admin.close().await;
                }
            });
        })
        .join();
    }
}
