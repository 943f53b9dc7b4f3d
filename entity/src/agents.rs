//! `agents`: the catalog of agents (code reviewer, test writer, ...) that run tasks.
//!
//! Everyone reads active agents; only admins write. Seeded by the migration.

use sea_orm::entity::prelude::*;

/// One agent of the catalog.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "agents")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    /// Stable, unique, URL-safe name (`code-reviewer`).
    #[sea_orm(unique)]
    pub slug: String,
    pub name: String,
    pub description: Option<String>,
    /// JSON array of capability names.
    #[sea_orm(column_type = "JsonBinary")]
    pub capabilities: Json,
    /// JSON object of agent settings (default model, limits, ...).
    #[sea_orm(column_type = "JsonBinary")]
    pub config: Json,
    pub is_active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::agent_tasks::Entity")]
    AgentTasks,
}

impl Related<super::agent_tasks::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::AgentTasks.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
