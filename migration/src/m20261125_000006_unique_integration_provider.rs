//! One integration per provider and user: `connectIntegration` twice for the same
//! provider is a `CONFLICT` (`integrations_user_id_provider_key`), on both backends, not
//! a second row that a later update could not tell apart. The API stores providers in
//! lower case, so the plain column is the key.

use sea_orm_migration::prelude::*;

use crate::m20261125_000001_create_tables::ensure_supported;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ensure_supported(manager.get_database_backend())?;
        manager
            .get_connection()
            .execute_unprepared(
                "create unique index integrations_user_id_provider_key \
                 on integrations (user_id, provider);",
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        ensure_supported(manager.get_database_backend())?;
        manager
            .get_connection()
            .execute_unprepared("drop index if exists integrations_user_id_provider_key;")
            .await?;
        Ok(())
    }
}
