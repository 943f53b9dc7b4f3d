//! Admins read everyone's usage (`usageSummary(userId: ..)` is theirs, DESIGN §3 "admin:
//! all"); `m20261125_000002_enable_row_level_security` let each account read only its
//! own. Postgres only: SQLite has no policies.

use sea_orm::DbBackend;
use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const UP: &str = "create policy usage_analytics_admin_select on usage_analytics \
    as permissive for select to flashfusion_authenticated using (flashfusion_is_admin());";
const DOWN: &str = "drop policy if exists usage_analytics_admin_select on usage_analytics;";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(UP).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if manager.get_database_backend() == DbBackend::Postgres {
            manager.get_connection().execute_unprepared(DOWN).await?;
        }
        Ok(())
    }
}
