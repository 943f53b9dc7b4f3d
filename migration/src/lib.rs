//! Schema of the FlashFusion database, as sea-orm migrations for Postgres and SQLite.
//!
//! This crate owns every table, index, trigger, role grant and row-level-security policy,
//! plus the seed catalogs (`ai_services`, `agents`). The SQL is written per backend on
//! purpose: it is the contract the `entity` crate's models must match column for column.
//! A migration's SQL, once shipped, is never edited; a change is a new migration.
//!
//! The crate never connects on its own: the `flashfusion migrate` command and the test
//! harness call [`Migrator`] with a connection they own.

use sea_orm_migration::prelude::*;

/// Implements `MigrationTrait` for a migration that is the Postgres SQL in its `UP`
/// and `DOWN` constants alone, and does nothing on SQLite: it only changes what SQLite
/// does not have (roles, grants, policies, functions).
macro_rules! postgres_only {
    () => {
        #[async_trait::async_trait]
        impl MigrationTrait for Migration {
            async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::on_postgres(manager, UP).await
            }

            async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
                crate::on_postgres(manager, DOWN).await
            }
        }
    };
}

mod m20261125_000001_create_tables;
mod m20261125_000002_enable_row_level_security;
mod m20261125_000003_seed_catalogs;
mod m20261125_000004_tighten_policies;
mod m20261125_000005_align_reads_with_the_api;
mod m20261125_000006_unique_integration_provider;
mod m20261125_000007_task_readers_read_their_agents;
mod m20261125_000008_hide_who_signed_out;
mod m20261126_000009_event_outbox;
mod m20261126_000010_act_as_in_one_statement;
mod m20261126_000011_migration_state_for_the_login_role;
mod m20261126_000012_act_as_or_refuse;
mod m20261126_000013_unpinned_request_functions;
mod m20261126_000014_the_service_reads_retired_ai_services;

pub use sea_orm_migration::MigratorTrait;

/// Runs `sql` on Postgres, and nothing on SQLite (see `postgres_only!`).
async fn on_postgres(manager: &SchemaManager<'_>, sql: &str) -> Result<(), DbErr> {
    if manager.get_database_backend() == sea_orm::DbBackend::Postgres {
        manager.get_connection().execute_unprepared(sql).await?;
    }
    Ok(())
}

/// The Postgres roles the gateway switches to per transaction
/// (`select set_config('role', <role>, true)`), so that RLS applies.
///
/// They are created (idempotently, never dropped) by
/// `m20261125_000002_enable_row_level_security`. Roles are cluster-wide: every database of
/// the cluster, test databases included, shares them.
pub mod roles {
    /// Requests without a token.
    pub const ANON: &str = "flashfusion_anon";
    /// Requests with a user's token, admins included (`app.role` = `admin` tells them apart).
    pub const AUTHENTICATED: &str = "flashfusion_authenticated";
    /// Requests with a service token (agent workers, deployers, the gateway's own sign-in).
    pub const SERVICE: &str = "flashfusion_service";
}

/// All migrations, in the order they apply.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261125_000001_create_tables::Migration),
            Box::new(m20261125_000002_enable_row_level_security::Migration),
            Box::new(m20261125_000003_seed_catalogs::Migration),
            Box::new(m20261125_000004_tighten_policies::Migration),
            Box::new(m20261125_000005_align_reads_with_the_api::Migration),
            Box::new(m20261125_000006_unique_integration_provider::Migration),
            Box::new(m20261125_000007_task_readers_read_their_agents::Migration),
            Box::new(m20261125_000008_hide_who_signed_out::Migration),
            Box::new(m20261126_000009_event_outbox::Migration),
            Box::new(m20261126_000010_act_as_in_one_statement::Migration),
            Box::new(m20261126_000011_migration_state_for_the_login_role::Migration),
            Box::new(m20261126_000012_act_as_or_refuse::Migration),
            Box::new(m20261126_000013_unpinned_request_functions::Migration),
            Box::new(m20261126_000014_the_service_reads_retired_ai_services::Migration),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sea_orm::{ConnectionTrait, Database, DbErr, Statement};

    async fn count(db: &impl ConnectionTrait, sql: &str) -> Result<i64, DbErr> {
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await?
            .ok_or_else(|| DbErr::Custom(format!("no row for {sql}")))?;
        row.try_get_by_index(0)
    }

    /// up → down → up on SQLite leaves the schema and seeds in place, and `down` leaves
    /// nothing behind. (Postgres is covered by the end-to-end tests.)
    #[tokio::test]
    async fn sqlite_up_down_up() -> Result<(), DbErr> {
        let db = Database::connect("sqlite::memory:").await?;
        let objects = "select count(*) from sqlite_master \
                       where name not like 'sqlite_%' and name not like 'seaql_migrations%'";
        Migrator::up(&db, None).await?;
        let created = count(&db, objects).await?;
        Migrator::down(&db, None).await?;
        assert_eq!(count(&db, objects).await?, 0, "down left objects behind");
        Migrator::up(&db, None).await?;
        assert_eq!(count(&db, objects).await?, created);
        assert_eq!(count(&db, "select count(*) from ai_services").await?, 4);
        assert_eq!(count(&db, "select count(*) from agents").await?, 5);
        assert_eq!(count(&db, "select count(*) from profiles").await?, 0);
        Ok(())
    }
}
