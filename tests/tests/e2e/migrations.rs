//! Migrations: up → down → up on Postgres and SQLite, RLS enabled and forced with at
//! least one policy on every table, seed catalogs present, and concurrent `migrate up`
//! from two replicas taking turns on the advisory lock.

use flashfusion_tests::{TestDb, test_database_url};
use migration::{Migrator, MigratorTrait};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection, Statement};

/// The 12 tables of the data model and the 2 internal ones.
const TABLES: [&str; 14] = [
    "users",
    "projects",
    "ai_services",
    "user_api_keys",
    "code_generations",
    "agents",
    "agent_tasks",
    "deployments",
    "integrations",
    "billing",
    "usage_analytics",
    "notifications",
    "events",
    "revoked_tokens",
];

async fn strings(conn: &DatabaseConnection, sql: &str) -> Vec<String> {
    conn.query_all_raw(Statement::from_string(conn.get_database_backend(), sql))
        .await
        .expect(sql)
        .iter()
        .map(|row| row.try_get_by_index::<String>(0).expect("text column"))
        .collect()
}

async fn count(conn: &DatabaseConnection, table: &str) -> i64 {
    conn.query_one_raw(Statement::from_string(
        conn.get_database_backend(),
        format!("select count(*) from {table}"),
    ))
    .await
    .expect("count")
    .expect("a row")
    .try_get_by_index::<i64>(0)
    .expect("count")
}

async fn pg_tables(conn: &DatabaseConnection) -> Vec<String> {
    strings(
        conn,
        "select tablename::text from pg_tables where schemaname = 'public' and tablename <> 'seaql_migrations' order by 1",
    )
    .await
}

#[tokio::test]
async fn postgres_up_down_up() {
    let db = TestDb::new().await;
    let conn = db.connect().await;
    let mut expected: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(pg_tables(&conn).await, expected);

    Migrator::down(&conn, None).await.expect("down");
    assert!(pg_tables(&conn).await.is_empty(), "down leaves no table");
    let leftovers = strings(
        &conn,
        "select proname::text from pg_proc p join pg_namespace n on n.oid = p.pronamespace \
         where n.nspname = 'public' union all \
         select viewname::text from pg_views where schemaname = 'public'",
    )
    .await;
    assert!(
        leftovers.is_empty(),
        "down leaves no function or view: {leftovers:?}"
    );

    Migrator::up(&conn, None).await.expect("up again");
    assert_eq!(pg_tables(&conn).await, expected);
    assert!(count(&conn, "ai_services").await >= 4);
    assert!(count(&conn, "agents").await >= 4);
}

#[tokio::test]
async fn every_table_has_rls_enabled_forced_and_a_policy() {
    let db = TestDb::new().await;
    let conn = db.connect().await;
    for table in TABLES {
        let flags = strings(
            &conn,
            &format!(
                "select (relrowsecurity and relforcerowsecurity)::text from pg_class \
                 where oid = 'public.{table}'::regclass"
            ),
        )
        .await;
        assert_eq!(flags, ["true"], "{table}: RLS enabled and forced");
        let policies = strings(
            &conn,
            &format!("select policyname::text from pg_policies where schemaname = 'public' and tablename = '{table}'"),
        )
        .await;
        assert!(!policies.is_empty(), "{table} has no policy");
    }
}

#[tokio::test]
async fn sqlite_up_down_up() {
    let dir = std::env::temp_dir().join(format!("ff-sqlite-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let url = format!("sqlite://{}?mode=rwc", dir.join("test.db").display());
    let conn = Database::connect(url.as_str()).await.expect("sqlite");
    let tables = "select name from sqlite_master where type = 'table' and name not like 'sqlite_%' and name <> 'seaql_migrations' order by 1";

    Migrator::up(&conn, None).await.expect("up");
    let mut expected: Vec<String> = TABLES.iter().map(|t| (*t).to_owned()).collect();
    expected.sort();
    assert_eq!(strings(&conn, tables).await, expected);
    assert!(count(&conn, "ai_services").await >= 4);
    assert!(count(&conn, "agents").await >= 4);

    Migrator::down(&conn, None).await.expect("down");
    assert!(strings(&conn, tables).await.is_empty());
    Migrator::up(&conn, None).await.expect("up again");
    assert_eq!(strings(&conn, tables).await, expected);
    conn.close().await.expect("close");
    let _ = std::fs::remove_dir_all(dir);
}

/// Two replicas running `migrate up` at once on a fresh database (as `serve` does with
/// FLASHFUSION_MIGRATE_ON_START, or two `flashfusion migrate up`): the advisory lock
/// makes them take turns, so both succeed and every migration is recorded once.
#[tokio::test]
async fn concurrent_migrate_up_takes_turns() {
    let server = test_database_url();
    let admin = Database::connect(server.as_str()).await.expect("admin");
    let name = format!(
        "ff_test_{}_{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    );
    admin
        .execute_unprepared(&format!("create database {name}"))
        .await
        .expect("create an empty database");
    let (base, _) = server.rsplit_once('/').expect("a database URL");
    let url = format!("{base}/{name}");

    let first = flashfusion_api::db::Database::connect(&url, 3)
        .await
        .expect("first replica");
    let second = flashfusion_api::db::Database::connect(&url, 3)
        .await
        .expect("second replica");
    let (a, b) = tokio::join!(first.migrate(), second.migrate());
    assert!(a.is_ok(), "{a:?}");
    assert!(b.is_ok(), "{b:?}");

    let known: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .collect();
    let conn = first.connection();
    let recorded = strings(
        conn,
        "select version from seaql_migrations order by version",
    )
    .await;
    assert_eq!(recorded, known, "each migration recorded once, in order");
    assert!(first.schema_status().await.expect("status").is_current());
    drop((first, second));
    admin
        .execute_unprepared(&format!("drop database {name} with (force)"))
        .await
        .expect("drop");
}
